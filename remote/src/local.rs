//! `--build-on local`: the system is built with this machine's Nix, which needs no memory or network on the
//! far side for evaluating and building, and is then copied into the target's store there.

use installer::command::{self, CommandError};

use crate::RemoteError;

/// What `nix build` is asked for: the flake's system, named as `nixos-install --flake` names it.
pub fn toplevel(flake: &str, hostname: &str) -> String {
    format!("{}.system.build.toplevel", installer::flake::installable(flake, hostname))
}

fn nix(words: &[&str], on_line: &mut dyn FnMut(&str)) -> Result<(), RemoteError> {
    let mut args: Vec<String> = ["--extra-experimental-features", "nix-command flakes"].map(String::from).to_vec();
    args.extend(words.iter().map(|w| w.to_string()));
    command::stream("nix", &args, on_line).map_err(|error| match error {
        CommandError::Spawn { .. } => RemoteError::Local(format!("--build-on local needs Nix here: {error}")),
        other => RemoteError::Local(other.to_string()),
    })
}

/// Builds the flake's system here; returns its store path. Nix's messages go to `on_line`.
pub fn build_system(flake: &str, hostname: &str, on_line: &mut dyn FnMut(&str)) -> Result<String, RemoteError> {
    let installable = toplevel(flake, hostname);
    let mut answer = None;
    nix(
        &["build", "--no-link", "--no-write-lock-file", "--json", &installable],
        &mut |line| match serde_json::from_str::<serde_json::Value>(line) {
            Ok(value) if value.is_array() => answer = Some(value),
            _ => on_line(line),
        },
    )?;
    answer
        .as_ref()
        .and_then(|value| value[0]["outputs"]["out"].as_str())
        .map(str::to_string)
        .ok_or_else(|| RemoteError::Local(format!("nix build {installable} named no output: {answer:?}")))
}

/// The size of a store path with everything it refers to.
pub fn closure_bytes(path: &str) -> Result<u64, RemoteError> {
    let mut answer = None;
    nix(&["path-info", "--json", "--closure-size", path], &mut |line| {
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(line) {
            answer = value[0]["closureSize"].as_u64();
        }
    })?;
    answer.ok_or_else(|| RemoteError::Local(format!("nix path-info gave no closure size for {path}")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_system_is_named_as_nixos_install_names_it() {
        assert_eq!(
            super::toplevel("path:/x#web1", "other"),
            "path:/x#nixosConfigurations.\"web1\".config.system.build.toplevel"
        );
    }
}
