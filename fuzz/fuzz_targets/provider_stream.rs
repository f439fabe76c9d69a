//! Fuzzes `troupe::fuzzing` target "provider_stream".
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some(target) = troupe::fuzzing::target("provider_stream") {
        (target.run)(data);
    }
});
