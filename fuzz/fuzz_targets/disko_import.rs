//! Any JSON as a disko configuration: imported, then planned with sizes filled in; errors are fine, a
//! panic or a hang is not.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else { return };
    if let Ok(imported) = layouts::disko::import(&value) {
        let mut plan = imported.plan;
        for disk in plan.disks.values_mut() {
            disk.size = Some(64 << 30);
        }
        if plan.compile(&layouts::CompileOptions::default()).is_ok() {
            let _ = layouts::disko::export(&plan);
        }
    }
});
