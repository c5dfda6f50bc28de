#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lethe::untrusted::text_data(data));
