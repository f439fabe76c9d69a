//! Metric names, in one place. Libraries record through the `metrics` facade; the binary
//! installs the Prometheus recorder.

pub const MESSAGES_IN: &str = "troupe_messages_in_total";
pub const MESSAGES_OUT: &str = "troupe_messages_out_total";
pub const MESSAGE_ERRORS: &str = "troupe_message_errors_total";
pub const DUPLICATE_MESSAGES: &str = "troupe_duplicate_messages_total";
pub const SESSIONS_ACTIVE: &str = "troupe_sessions_active";
pub const SESSIONS_PASSIVATED: &str = "troupe_sessions_passivated";
pub const SESSION_PASSIVATIONS: &str = "troupe_session_passivations_total";
pub const SESSION_ACTIVATIONS: &str = "troupe_session_activations_total";
pub const GATEWAY_LATENCY_SECONDS: &str = "troupe_gateway_added_latency_seconds";
pub const MODEL_LATENCY_SECONDS: &str = "troupe_model_latency_seconds";
pub const PROVIDER_ERRORS: &str = "troupe_provider_errors_total";
pub const PROVIDER_RETRIES: &str = "troupe_provider_retries_total";
pub const PROVIDER_FALLBACKS: &str = "troupe_provider_fallbacks_total";
/// OpenTelemetry's GenAI metric of tokens per model call (Prometheus:
/// `gen_ai_client_token_usage`); labels `gen_ai.operation.name`, `gen_ai.provider.name`,
/// `gen_ai.request.model`, `gen_ai.token.type` (`input`, `output`).
pub const GEN_AI_TOKEN_USAGE: &str = "gen_ai.client.token.usage";
/// OpenTelemetry's GenAI metric of a model call's duration in seconds (Prometheus:
/// `gen_ai_client_operation_duration`); the same labels, and `error.type` on failure.
pub const GEN_AI_OPERATION_DURATION: &str = "gen_ai.client.operation.duration";
pub const ACTOR_RESTARTS: &str = "troupe_actor_restarts_total";
pub const ACTOR_FAILURES: &str = "troupe_actor_failures_total";
pub const SNAPSHOT_ERRORS: &str = "troupe_snapshot_errors_total";
/// The page cache a redb store may fill (its configured bound); label `store`.
pub const STORE_CACHE_BYTES: &str = "troupe_store_cache_limit_bytes";
/// The process's resident memory (`VmRSS`).
pub const PROCESS_RESIDENT_BYTES: &str = "troupe_process_resident_bytes";
/// Bytes the program has allocated and not freed.
pub const HEAP_ALLOCATED_BYTES: &str = "troupe_heap_allocated_bytes";
/// Resident bytes the allocator holds beyond what is allocated: freed memory not yet
/// given back to the system, and the allocator's own bookkeeping.
pub const HEAP_RETAINED_BYTES: &str = "troupe_heap_retained_bytes";
/// 1 while the allocator has kept much more than is in use for a while (see the log).
pub const HEAP_RETAINED_HIGH: &str = "troupe_heap_retained_high";
/// 1 while the session store takes writes, 0 while it is failing (a full disk).
pub const STORAGE_WRITABLE: &str = "troupe_storage_writable";
pub const WEBSOCKET_CONNECTIONS: &str = "troupe_websocket_connections";
/// Open HTTP connections (upgraded WebSockets included).
pub const HTTP_CONNECTIONS: &str = "troupe_http_connections";
/// Connections closed at once because a cap was reached; label `reason` (`node`, `address`).
pub const HTTP_CONNECTIONS_REFUSED: &str = "troupe_http_connections_refused_total";
/// Requests refused before any route ran; label `reason` (`host`, `origin`, `busy`).
pub const HTTP_REQUESTS_REFUSED: &str = "troupe_http_requests_refused_total";
/// Bytes of room taken by webhook bodies being read before their signature is checked.
pub const WEBHOOK_BODY_BYTES: &str = "troupe_webhook_body_bytes_reserved";
/// Requests and WebSocket hellos with a missing or wrong token.
pub const AUTH_FAILURES: &str = "troupe_auth_failures_total";
/// 0 starting, 1 connected, 2 backing off, 3 failed, 4 stopped, 5 standby (another node
/// receives); labels `bridge`, `kind`.
pub const BRIDGE_STATE: &str = "troupe_bridge_state";
pub const BRIDGE_RESTARTS: &str = "troupe_bridge_restarts_total";
pub const BRIDGE_MESSAGES_IN: &str = "troupe_bridge_messages_in_total";
pub const BRIDGE_MESSAGES_OUT: &str = "troupe_bridge_replies_delivered_total";
/// Messages a bridge's assistant answered (replies handed to delivery).
pub const BRIDGE_REPLIES_ANSWERED: &str = "troupe_bridge_replies_answered_total";
pub const BRIDGE_DELIVERY_FAILURES: &str = "troupe_bridge_delivery_failures_total";
pub const BRIDGE_DELIVERY_RETRIES: &str = "troupe_bridge_delivery_retries_total";
/// Messages kept from the model by the access policy; label `reason`.
pub const BRIDGE_REFUSED: &str = "troupe_bridge_refused_total";
/// Requests waiting for a local model; label `model`.
pub const LOCAL_MODEL_QUEUE_DEPTH: &str = "troupe_local_model_queue_depth";
/// Items per batch a local model ran; label `model`.
pub const LOCAL_MODEL_BATCH_SIZE: &str = "troupe_local_model_batch_size";
/// Seconds one batch of a local model took; label `model`.
pub const LOCAL_MODEL_SECONDS: &str = "troupe_local_model_batch_seconds";
/// Items a local model answered (items/s is its rate); label `model`.
pub const LOCAL_MODEL_ITEMS: &str = "troupe_local_model_items_total";
/// Times a local model was loaded again after it failed, or its thread started again.
pub const LOCAL_MODEL_RESTARTS: &str = "troupe_local_model_restarts_total";
/// How long a stage of the voice pipeline took; label `stage`: `wake` (a wake word's audio
/// to its detection), `transcript` (end of speech
/// to its transcript), `tts_first_audio` (a reply ready to its first audio sent),
/// `first_audio` (end of speech to the reply's first audio sent).
pub const VOICE_STAGE_SECONDS: &str = "troupe_voice_stage_seconds";
/// Voice notes received on the messaging platforms, by `outcome`: `heard` (transcribed
/// and answered), `refused` (answered with why), `retry` (handed back to the platform).
pub const VOICE_NOTES: &str = "troupe_voice_notes_total";
/// Replies sent as voice notes, by `outcome`: `sent`, `failed` (went as text only).
pub const VOICE_REPLIES: &str = "troupe_voice_replies_total";
/// Turns whose usage was counted but could not be kept in the usage ledger.
pub const USAGE_NOT_KEPT: &str = "troupe_usage_not_kept_total";
/// Turns stopped by a guard, by `guard`: `turn_tokens` (past `max_tokens_per_turn`),
/// `tool_rounds` (the model kept calling tools past `max_rounds`), `budget` (a daily
/// budget is spent).
pub const TURNS_GUARDED: &str = "troupe_turns_guarded_total";
/// How long each stage of a turn took (a histogram), by `stage`: `queue` (admitted to its
/// turn starting), `model` (one model call), `tools` (one round of tool calls), `store`
/// (one snapshot write).
pub const TURN_STAGE_SECONDS: &str = "troupe_turn_stage_seconds";
