#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lethe::untrusted::gguf_file(data));
