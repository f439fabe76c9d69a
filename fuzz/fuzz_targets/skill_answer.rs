//! Fuzzes `troupe::fuzzing` target "skill_answer".
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some(target) = troupe::fuzzing::target("skill_answer") {
        (target.run)(data);
    }
});
