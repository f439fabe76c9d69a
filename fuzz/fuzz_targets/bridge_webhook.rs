//! Fuzzes `troupe::fuzzing` target "bridge_webhook".
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some(target) = troupe::fuzzing::target("bridge_webhook") {
        (target.run)(data);
    }
});
