// Hocuspocus (npm @hocuspocus/server 3.4.4, from this directory's lock file) on 127.0.0.1,
// documents in memory, so that `./scripts/bench canvas` measures it beside Troupe with the
// same client (`troupe bench-canvas --protocol hocuspocus`).
// Usage: node hocuspocus-server.mjs PORT
import { Server } from '@hocuspocus/server'

const server = new Server({ port: Number(process.argv[2]), address: '127.0.0.1', quiet: true })
await server.listen()
console.log(`hocuspocus listening on ws://127.0.0.1:${process.argv[2]}`)
