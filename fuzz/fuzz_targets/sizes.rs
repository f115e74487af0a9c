//! Any text as a size, and sizes placed on disks: errors are fine, a panic (overflow) is not.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = layouts::size::parse_bytes(text);
    if let Ok(size) = text.parse::<layouts::Size>() {
        // What is written back reads the same.
        assert_eq!(size.to_string().parse::<layouts::Size>().ok(), Some(size), "{text:?}");
        for disk in [1 << 20, 64 << 30, u64::MAX] {
            let _ = layouts::gpt::allocate(layouts::gpt::Geometry::new(disk, 512), &[size, layouts::Size::Rest]);
        }
    }
});
