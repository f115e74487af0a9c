//! Properties of partition placement: never overlapping, always aligned, never past the end, and "rest"
//! takes what remains.

use layouts::gpt::{allocate, Geometry};
use layouts::size::MIB;
use layouts::Size;
use proptest::prelude::*;

fn sizes() -> impl Strategy<Value = Vec<Size>> {
    let fixed = (1u64..4096).prop_map(|kib| Size::Bytes(kib * 1024));
    let mib = (1u64..2048).prop_map(|m| Size::Bytes(m * MIB));
    proptest::collection::vec(prop_oneof![fixed, mib], 1..8)
        .prop_flat_map(|list| {
            let len = list.len();
            (Just(list), proptest::option::of(0..=len))
        })
        .prop_map(|(mut list, rest_at)| {
            if let Some(at) = rest_at {
                list.insert(at, Size::Rest);
            }
            list
        })
}

proptest! {
    #[test]
    fn placement_is_sound(
        sizes in sizes(),
        disk_mib in 16u64..65536,
        sector in prop_oneof![Just(512u64), Just(4096u64)],
    ) {
        let geometry = Geometry::new(disk_mib * MIB, sector);
        let Ok(extents) = allocate(geometry, &sizes) else {
            // Refused: then the fixed sizes alone, aligned, really do not fit.
            let fixed: u64 = sizes.iter().filter_map(|s| s.bytes()).map(|b| b.div_ceil(MIB) * MIB).sum();
            let min_rest = if sizes.contains(&Size::Rest) { MIB } else { 0 };
            prop_assert!(fixed + min_rest + MIB > disk_mib * MIB - 2 * 33 * sector);
            return Ok(());
        };
        prop_assert_eq!(extents.len(), sizes.len());
        let last_usable = geometry.last_usable().expect("fits");
        for (extent, size) in extents.iter().zip(&sizes) {
            prop_assert_eq!(extent.first_lba % geometry.alignment(), 0, "start not aligned");
            prop_assert!(extent.first_lba >= geometry.first_usable());
            prop_assert!(extent.last_lba <= last_usable, "past the end");
            prop_assert!(extent.last_lba >= extent.first_lba);
            match size {
                Size::Bytes(bytes) => prop_assert_eq!(extent.sectors(), bytes.div_ceil(sector)),
                Size::Rest => prop_assert_eq!((extent.last_lba + 1) % geometry.alignment(), 0, "rest does not \
                    end aligned"),
                Size::AllBut(_) => unreachable!("not generated here"),
            }
        }
        for pair in extents.windows(2) {
            prop_assert!(pair[0].last_lba < pair[1].first_lba, "overlap");
        }
        if let Some(rest) = sizes.iter().position(|s| *s == Size::Rest) {
            // What rest leaves unused is less than one alignment unit per neighbour gap plus the tail.
            let next_start = extents.get(rest + 1).map_or(last_usable + 1, |e| e.first_lba);
            let gap_after = next_start - (extents[rest].last_lba + 1);
            let trailing = sizes.len() - rest;
            prop_assert!(gap_after < geometry.alignment() * trailing as u64 + 64, "rest left {} sectors \
                unused", gap_after);
        }
    }

    #[test]
    fn sizes_print_and_parse_back(bytes in 1u64..(1u64 << 52)) {
        let size = Size::Bytes(bytes);
        prop_assert_eq!(size.to_string().parse::<Size>(), Ok(size));
    }
}

proptest! {
    #[test]
    fn ending_before_the_end_leaves_room_behind(
        before in 1u64..64,
        gap in 1u64..512,
        after in proptest::collection::vec(1u64..64, 0..3),
    ) {
        let geometry = Geometry::new(4 << 30, 512);
        let mut sizes = vec![Size::Bytes(before * MIB), Size::AllBut(gap * MIB)];
        sizes.extend(after.iter().map(|m| Size::Bytes(m * MIB)));
        let fits = after.iter().sum::<u64>() <= gap;
        match allocate(geometry, &sizes) {
            Ok(extents) => {
                let end_bytes = (extents[1].last_lba + 1) * 512;
                prop_assert!(end_bytes <= (4u64 << 30) - gap * MIB, "ends too late");
                prop_assert!(end_bytes + gap * MIB + MIB > (4u64 << 30) - 33 * 512, "ends too early");
                prop_assert_eq!((extents[1].last_lba + 1) % geometry.alignment(), 0);
                for pair in extents.windows(2) {
                    prop_assert!(pair[0].last_lba < pair[1].first_lba);
                }
                prop_assert!(fits || after.iter().sum::<u64>() <= gap + 1, "placed partitions that cannot fit");
            }
            Err(_) => prop_assert!(!fits || after.iter().sum::<u64>() + 1 >= gap, "refused a layout that fits"),
        }
    }
}

#[test]
fn rest_fills_the_disk_exactly() {
    let geometry = Geometry::new(8 << 30, 512);
    let extents = allocate(geometry, &[Size::Bytes(MIB * 512), Size::Rest]).expect("fits");
    assert_eq!(extents[0].first_lba, 2048);
    assert_eq!(extents[1].first_lba, 2048 + 512 * 2048);
    // The backup GPT takes the last 33 sectors; rest ends on the last whole MiB before it.
    assert_eq!(extents[1].last_lba + 1, (8u64 << 30) / 512 - 2048);
}

#[test]
fn rest_in_the_middle_leaves_room_for_what_follows() {
    let geometry = Geometry::new(4 << 30, 4096);
    let extents = allocate(geometry, &[Size::Bytes(MIB), Size::Rest, Size::Bytes(256 * MIB)]).expect("fits");
    assert_eq!(extents[2].sectors(), 256 * 256);
    assert!(extents[2].last_lba <= geometry.last_usable().expect("usable"));
    assert!(extents[1].last_lba < extents[2].first_lba);
}
