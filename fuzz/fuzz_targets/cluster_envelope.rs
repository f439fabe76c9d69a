//! Fuzzes `troupe::fuzzing` target "cluster_envelope".
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some(target) = troupe::fuzzing::target("cluster_envelope") {
        (target.run)(data);
    }
});
