//! Any text as a TOML plan: read, validated and compiled; an error is fine, a panic or a hang is not.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(plan) = layouts::Plan::from_toml(text) {
        if let Ok(steps) = plan.compile(&layouts::CompileOptions::default()) {
            let _ = steps.render();
            let _ = layouts::nixos::module(&plan);
            let _ = layouts::disko::export(&plan);
        }
    }
});
