//! Fuzzes `troupe::fuzzing` target "rest_message".
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some(target) = troupe::fuzzing::target("rest_message") {
        (target.run)(data);
    }
});
