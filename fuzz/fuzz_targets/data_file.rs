#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lethe::untrusted::data_file(data));
