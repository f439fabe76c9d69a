//! Fuzzes `troupe::fuzzing` target "openai_request".
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some(target) = troupe::fuzzing::target("openai_request") {
        (target.run)(data);
    }
});
