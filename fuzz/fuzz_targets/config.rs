//! Fuzzes `troupe::fuzzing` target "config".
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some(target) = troupe::fuzzing::target("config") {
        (target.run)(data);
    }
});
