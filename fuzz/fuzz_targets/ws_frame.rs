//! Fuzzes `troupe::fuzzing` target "ws_frame".
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some(target) = troupe::fuzzing::target("ws_frame") {
        (target.run)(data);
    }
});
