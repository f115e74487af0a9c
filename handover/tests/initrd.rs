//! The unpacked size of an initrd made as the kernel takes them: a plain cpio, then compressed ones, each
//! padded; made here with cpio, zstd and gzip.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use handover::initrd::unpacked_size;

fn cpio_of(dir: &Path) -> Vec<u8> {
    let names: String = std::fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .map(|e| format!("{}\n", e.file_name().to_string_lossy()))
        .collect();
    let mut child = Command::new("cpio")
        .args(["-o", "-H", "newc", "--quiet"])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("cpio");
    child.stdin.take().expect("stdin").write_all(names.as_bytes()).expect("names");
    let output = child.wait_with_output().expect("cpio");
    assert!(output.status.success());
    output.stdout
}

fn compressed(program: &str, data: &[u8]) -> Vec<u8> {
    let mut child =
        Command::new(program).args(["-c", "-q"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect(program);
    let mut stdin = child.stdin.take().expect("stdin");
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data).expect("write"));
    let output = child.wait_with_output().expect(program);
    writer.join().expect("writer");
    assert!(output.status.success(), "{program}");
    output.stdout
}

#[test]
fn plain_zstd_and_gzip_archives_are_counted_unpacked() {
    let base = std::env::temp_dir().join(format!("nix-dabei-initrd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let mut archives = Vec::new();
    for (index, size) in [(0, 3000usize), (1, 2_000_000), (2, 700_000)] {
        let dir = base.join(format!("part{index}"));
        std::fs::create_dir_all(&dir).expect("dir");
        // Text that compresses well, as an initrd's programs and libraries do.
        let text: String = (0..size / 20).map(|i| format!("line {i:>12}   \n")).collect();
        std::fs::write(dir.join(format!("file{index}")), &text).expect("write");
        std::fs::write(dir.join("small"), b"x").expect("write");
        archives.push(cpio_of(&dir));
    }
    let mut initrd = archives[0].clone();
    initrd.extend(compressed("zstd", &archives[1]));
    initrd.extend([0u8; 3]); // padding between parts, as appended archives have
    initrd.extend(compressed("gzip", &archives[2]));
    let path = base.join("initrd");
    std::fs::write(&path, &initrd).expect("write");
    let expected: usize = archives.iter().map(Vec::len).sum();
    let got = unpacked_size(&path).expect("read").expect("every part is readable") as usize;
    // Within the archives' padding to 512-byte blocks, which the plain one's count leaves out.
    assert!(got <= expected && expected - got < 512, "counted {got}, the archives hold {expected}");
    assert!(got > 2 * initrd.len(), "the compressed parts count unpacked: {got} from {}", initrd.len());

    std::fs::write(&path, compressed("xz", &archives[1])).expect("write");
    assert_eq!(unpacked_size(&path).expect("read"), None, "xz is not read here: the caller estimates");
    let _ = std::fs::remove_dir_all(&base);
}
