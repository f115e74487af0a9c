//! `nix-dabei kexec` (on a rescue system) and `nix-dabei restore-network` (in the RAM OS).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use handover as kexec;

/// Arguments of `nix-dabei kexec`.
#[derive(Debug, Args)]
pub struct KexecArgs {
    /// The RAM OS kernel (bzImage).
    #[arg(long)]
    pub kernel: PathBuf,
    /// The RAM OS initrd.
    #[arg(long)]
    pub initrd: PathBuf,
    /// The kernel command line.
    #[arg(long, default_value = "")]
    pub append: String,
    /// Seconds to wait before switching, so that the SSH session can end.
    #[arg(long, default_value_t = 6)]
    pub delay: u64,
    /// Load the kernel but do not switch to it.
    #[arg(long)]
    pub no_switch: bool,
}

/// Arguments of `nix-dabei restore-network`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The folder the handover was unpacked to.
    #[arg(default_value = "/etc/nix-dabei/kexec")]
    pub dir: PathBuf,
    /// The root of the system to restore into.
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
}

/// Runs `nix-dabei kexec`.
pub fn run(args: KexecArgs) -> Result<()> {
    let files = kexec::collect().context("cannot collect the keys and network settings")?;
    for file in &files {
        let what = file.path.trim_start_matches(kexec::HANDOVER_DIR).trim_start_matches('/');
        println!("carrying over {what}");
    }
    let work = installer::journal::Journal::default_dir().join("kexec");
    kexec::check_memory(&args.kernel, &args.initrd)?;
    if !args.append.split_whitespace().any(|word| word.starts_with("init=")) {
        eprintln!("note: no init= in --append: a NixOS RAM OS cannot find its system without it (kexec/run passes it)");
    }
    let staged = kexec::stage_initrd(&args.initrd, &files, &work)?;
    let loaded = kexec::load(&args.kernel, staged.path(), &args.append);
    // The kernel holds its own copy now: the handover (private host keys) leaves the file again.
    staged.finish()?;
    let how = loaded?;
    println!("loaded {} with {how}", args.kernel.display());
    if args.no_switch {
        println!("not switching (--no-switch); `kexec -e` switches");
        return Ok(());
    }
    println!("switching to the RAM OS in {} s; reconnect with ssh as root to the same address", args.delay);
    kexec::switch_later(Duration::from_secs(args.delay))?;
    Ok(())
}

/// Runs `nix-dabei restore-network`.
pub fn restore(args: RestoreArgs) -> Result<()> {
    let restored = kexec::restore(&args.dir, &args.root)?;
    for action in restored.actions {
        println!("restored {action}");
    }
    for warning in restored.warnings {
        eprintln!("not restored: {warning}");
    }
    Ok(())
}
