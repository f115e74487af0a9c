//! Steps: what applying a plan does, one operation at a time, in dependency order.
//!
//! Each operation is a struct that lives with its node type (`nodes::filesystem::Mkfs`,
//! `nodes::zfs::ZpoolCreate`, ...); [`Operation`] is the registry that names them all, one line each.
//! Where an operation runs a program, [`OperationKind::command`] builds its exact command line: the
//! review `nix-dabei plan` prints and what the executor runs come from that one function.

use std::fmt;

use serde::{Deserialize, Serialize};

pub use crate::nodes::bcachefs::{BcachefsDevice, BcachefsFormat, BcachefsSubvolumes};
pub use crate::nodes::btrfs::BtrfsSubvolumes;
pub use crate::nodes::filesystem::{GrowFs, Mkfs};
pub use crate::nodes::gpt::{GptPartition, PartitionTable, Wipe};
pub use crate::nodes::install::{InitrdHostKey, NixosInstall, WriteNixosModule};
pub use crate::nodes::luks::{LuksClose, LuksFormat, LuksOpen};
pub use crate::nodes::lvm::{LvCreate, PvCreate, VgActivate, VgCreate, VgDeactivate};
pub use crate::nodes::mdadm::{ArrayPartition, ArrayPartitionTable, MdAssemble, MdCreate, MdStop};
pub use crate::nodes::mount::{Mount, Unmount};
pub use crate::nodes::swap::{Mkswap, Swapoff, Swapon};
pub use crate::nodes::zfs::{HostId, VdevDevices, ZfsCreate, ZpoolCreate, ZpoolExport};

/// A program and its arguments, exactly as the executor runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandLine {
    /// The program, found on PATH.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
}

impl CommandLine {
    /// A command line from a program and arguments.
    pub fn new<I, S>(program: &str, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        CommandLine { program: program.to_string(), args: args.into_iter().map(Into::into).collect() }
    }
}

/// Quotes a word for a POSIX shell when it needs quoting, so that the review can be pasted into one.
pub fn shell_word(word: &str) -> String {
    let plain = !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%^".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// The command line as a shell would read it.
impl fmt::Display for CommandLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", shell_word(&self.program))?;
        for arg in &self.args {
            write!(f, " {}", shell_word(arg))?;
        }
        Ok(())
    }
}

/// What every operation type provides. Implemented by each operation struct beside its node type.
pub trait OperationKind: fmt::Debug + Send + Sync {
    /// True when performing the operation destroys what the device held.
    fn destroys_data(&self) -> bool;

    /// True when the operation makes something (a table, a filesystem, a dataset, a file): such steps
    /// never run when only mounting what an earlier apply made. Everything that destroys data makes
    /// something.
    fn creates(&self) -> bool {
        self.destroys_data()
    }

    /// The exact program the executor runs for this operation, for operations that run one.
    fn command(&self) -> Option<CommandLine> {
        None
    }

    /// Every program run the operation makes, in order: its [`OperationKind::command`] and, for the
    /// few operations one run cannot finish (exFAT's serial and label), the runs that follow it.
    fn commands(&self) -> Vec<CommandLine> {
        self.command().into_iter().collect()
    }

    /// The programs that probing and performing the operation run besides its
    /// [`OperationKind::command`]: filesystem checks, reports read back, growing. Each is declared in
    /// [`crate::programs`]; the preview refuses a plan whose programs the machine lacks.
    fn other_programs(&self) -> Vec<&'static str> {
        Vec::new()
    }

    /// True when performing the operation derives a key with a memory-hard function (LUKS2's argon2id,
    /// up to 1 GiB, or half the machine's memory): the executor never runs two such steps at once, so
    /// that a machine with little memory (a RAM OS holds itself in it) is not driven out of it.
    fn derives_key(&self) -> bool {
        false
    }

    /// The line people review. Operations that run programs print their [`OperationKind::commands`],
    /// joined by `&&`; the others say what they do in the same style.
    fn review(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let commands = self.commands();
        if commands.is_empty() {
            return write!(f, "{self:?}");
        }
        let lines: Vec<String> = commands.iter().map(ToString::to_string).collect();
        write!(f, "{}", lines.join(" && "))
    }

    /// The operation that undoes what this one leaves active (unmount for a mount, export for a pool),
    /// with the id and description of that teardown step.
    fn undo(&self) -> Option<(String, String, Operation)> {
        None
    }
}

/// One operation on the machine, with everything needed to perform it. This enum is the registry of
/// operation types: adding one is a struct beside its node type and one line here and in
/// [`Operation::kind`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Operation {
    /// Remove every signature from a disk and from its current partitions.
    Wipe(Wipe),
    /// Write a new GPT with a protective MBR, then make the kernel see its partitions.
    PartitionTable(PartitionTable),
    /// Create a LUKS2 header.
    LuksFormat(LuksFormat),
    /// Open a LUKS2 device.
    LuksOpen(LuksOpen),
    /// Set the running system's host id to the installed system's.
    HostId(HostId),
    /// `zpool create`.
    ZpoolCreate(ZpoolCreate),
    /// `zfs create`.
    ZfsCreate(ZfsCreate),
    /// Make a filesystem.
    Mkfs(Mkfs),
    /// Grow a kept filesystem to fill its grown partition.
    GrowFs(GrowFs),
    /// Create a RAID array.
    MdCreate(MdCreate),
    /// Assemble a RAID array.
    MdAssemble(MdAssemble),
    /// Stop a RAID array.
    MdStop(MdStop),
    /// Write a GPT inside a RAID array, placed on its actual size.
    ArrayPartitionTable(ArrayPartitionTable),
    /// `bcachefs format` over a filesystem's devices.
    BcachefsFormat(BcachefsFormat),
    /// Create bcachefs subvolumes.
    BcachefsSubvolumes(BcachefsSubvolumes),
    /// Make an LVM physical volume.
    PvCreate(PvCreate),
    /// Create an LVM volume group.
    VgCreate(VgCreate),
    /// Create an LVM logical volume.
    LvCreate(LvCreate),
    /// Activate a volume group.
    VgActivate(VgActivate),
    /// Deactivate a volume group.
    VgDeactivate(VgDeactivate),
    /// Create a btrfs filesystem's subvolumes and swap files.
    BtrfsSubvolumes(BtrfsSubvolumes),
    /// Make swap space.
    Mkswap(Mkswap),
    /// Mount a filesystem under the target root.
    Mount(Mount),
    /// Enable swap.
    Swapon(Swapon),
    /// Write the NixOS module that describes this layout.
    WriteNixosModule(WriteNixosModule),
    /// Generate the initrd's SSH host key for remote unlock.
    InitrdHostKey(InitrdHostKey),
    /// Install NixOS from a flake into the target root.
    NixosInstall(NixosInstall),
    /// Unmount.
    Unmount(Unmount),
    /// Disable swap.
    Swapoff(Swapoff),
    /// Export a pool.
    ZpoolExport(ZpoolExport),
    /// Close a LUKS mapping.
    LuksClose(LuksClose),
}

impl Operation {
    /// The operation's type, through which its command line, review and undo are reached.
    pub fn kind(&self) -> &dyn OperationKind {
        match self {
            Operation::Wipe(op) => op,
            Operation::PartitionTable(op) => op,
            Operation::LuksFormat(op) => op,
            Operation::LuksOpen(op) => op,
            Operation::HostId(op) => op,
            Operation::ZpoolCreate(op) => op,
            Operation::ZfsCreate(op) => op,
            Operation::Mkfs(op) => op,
            Operation::GrowFs(op) => op,
            Operation::BtrfsSubvolumes(op) => op,
            Operation::MdCreate(op) => op,
            Operation::MdAssemble(op) => op,
            Operation::MdStop(op) => op,
            Operation::ArrayPartitionTable(op) => op,
            Operation::BcachefsFormat(op) => op,
            Operation::BcachefsSubvolumes(op) => op,
            Operation::PvCreate(op) => op,
            Operation::VgCreate(op) => op,
            Operation::LvCreate(op) => op,
            Operation::VgActivate(op) => op,
            Operation::VgDeactivate(op) => op,
            Operation::Mkswap(op) => op,
            Operation::Mount(op) => op,
            Operation::Swapon(op) => op,
            Operation::WriteNixosModule(op) => op,
            Operation::InitrdHostKey(op) => op,
            Operation::NixosInstall(op) => op,
            Operation::Unmount(op) => op,
            Operation::Swapoff(op) => op,
            Operation::ZpoolExport(op) => op,
            Operation::LuksClose(op) => op,
        }
    }

    /// True when performing the operation destroys what the device held.
    pub fn destroys_data(&self) -> bool {
        self.kind().destroys_data()
    }

    /// True when performing the operation derives a key with a memory-hard function.
    pub fn derives_key(&self) -> bool {
        self.kind().derives_key()
    }

    /// The exact program run for this operation, where it runs one.
    pub fn command(&self) -> Option<CommandLine> {
        self.kind().command()
    }

    /// Every program run performing the operation makes, in order ([`OperationKind::commands`]).
    pub fn commands(&self) -> Vec<CommandLine> {
        self.kind().commands()
    }

    /// Every program probing and performing the operation runs: its commands' and the others
    /// ([`OperationKind::other_programs`]), each once. udev's `udevadm settle` is not among them: it
    /// runs only where udev does.
    pub fn programs(&self) -> Vec<String> {
        let mut programs: Vec<String> = Vec::new();
        let runs = self.commands().into_iter().map(|c| c.program);
        for program in runs.chain(self.kind().other_programs().into_iter().map(String::from)) {
            if !programs.contains(&program) {
                programs.push(program);
            }
        }
        programs
    }
}

/// The operation as the equivalent command line, for people reviewing a plan.
impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.kind().review(f)
    }
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Unique id, such as `gpt:disk0` or `mount:/boot`.
    pub id: String,
    /// One line for people.
    pub description: String,
    /// The devices it touches.
    pub devices: Vec<String>,
    /// The plan disk it belongs to, for steps on one disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<String>,
    /// Whether it destroys data.
    pub destructive: bool,
    /// Steps that must be finished first.
    pub after: Vec<String>,
    /// Exactly what it does.
    pub operation: Operation,
    /// The kept partitions (`disk/partition`, comma-separated) whose data this step would destroy if it had
    /// to run: on a machine that holds them as planned, the step is found done; otherwise the plan is
    /// refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keeps: Option<String>,
}

/// A compiled plan: the steps that apply it and the steps that tear the result down again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Steps {
    /// The steps that apply the plan, in an order that respects every dependency.
    pub steps: Vec<Step>,
    /// Unmount, swapoff, export and close, in the reverse order.
    pub teardown: Vec<Step>,
}

impl Steps {
    /// A readable dry run: one line per step, destructive ones marked, and those that would destroy what
    /// the plan keeps marked as such (on the machine they are found done, or the plan is refused).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let width = self.steps.len().to_string().len();
        for (index, step) in self.steps.iter().enumerate() {
            let mark = match (&step.keeps, step.destructive) {
                (Some(_), _) => "KEEPS   ",
                (None, true) => "DESTROYS",
                (None, false) => "        ",
            };
            out.push_str(&format!("{:>width$}. {mark} {}\n", index + 1, step.description));
            if let Some(kept) = &step.keeps {
                out.push_str(&format!(
                    "{:>width$}           (found done where {kept} stays as planned; otherwise the plan is refused)\n",
                    ""
                ));
            }
            out.push_str(&format!("{:>width$}           {}\n", "", step.operation));
        }
        out
    }

    /// The steps that destroy data, leaving out those that keep what the plan keeps (they run only when
    /// they destroy nothing kept).
    pub fn destructive(&self) -> usize {
        self.steps.iter().filter(|s| s.destructive && s.keeps.is_none()).count()
    }
}
