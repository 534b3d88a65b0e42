//! Pure translation of a container spec into a local process: image → binary, command
//! resolution, `$(VAR)` expansion, mount-path rewriting, and the pod address pool.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// `--image NAME=PATH` mappings.
#[derive(Debug, Default)]
pub struct ImageMap(BTreeMap<String, PathBuf>);

impl ImageMap {
    pub fn parse(flags: &[String]) -> Result<Self> {
        let mut map = BTreeMap::new();
        for f in flags {
            let (name, path) = f
                .split_once('=')
                .filter(|(n, p)| !n.is_empty() && !p.is_empty())
                .ok_or_else(|| Error::ImageFlag(f.clone()))?;
            map.insert(image_name(name).to_owned(), PathBuf::from(path));
        }
        Ok(Self(map))
    }

    /// The binary for `image`, matched on its bare name.
    pub fn binary(&self, image: &str) -> Option<&Path> {
        self.0.get(image_name(image)).map(PathBuf::as_path)
    }

    /// "a=/x, b=/y" for error messages.
    pub fn describe(&self) -> String {
        if self.0.is_empty() {
            return "none (pass --image NAME=PATH)".into();
        }
        self.0
            .iter()
            .map(|(n, p)| format!("{n}={}", p.display()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `ghcr.io/x/weir-worker:1.2@sha256:…` → `weir-worker`.
pub fn image_name(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    last.split(':').next().unwrap_or(last)
}

/// Program and arguments of a container, as Kubernetes composes them: `command` replaces the
/// image's entrypoint (the mapped binary), `args` are appended. A `command[0]` whose basename is
/// the image binary's basename or the image's name is the image binary.
pub fn program(binary: &Path, command: &[String], args: &[String]) -> (PathBuf, Vec<String>) {
    let Some((first, rest)) = command.split_first() else {
        return (binary.to_owned(), args.to_vec());
    };
    let base = Path::new(first).file_name().and_then(|s| s.to_str());
    let bin_base = binary.file_name().and_then(|s| s.to_str());
    let exe = if base.is_some() && base == bin_base {
        binary.to_owned()
    } else {
        PathBuf::from(first)
    };
    let mut all = rest.to_vec();
    all.extend_from_slice(args);
    (exe, all)
}

/// Like [`program`], but maps `command[0]` to the image binary also when its basename is the
/// image name (e.g. image `weir` mapped to a binary `weir-dev`, command `/usr/local/bin/weir`).
pub fn program_for_image(
    image: &str,
    binary: &Path,
    command: &[String],
    args: &[String],
) -> (PathBuf, Vec<String>) {
    let (exe, rest) = program(binary, command, args);
    let base = exe.file_name().and_then(|s| s.to_str());
    if base == Some(image_name(image)) {
        (binary.to_owned(), rest)
    } else {
        (exe, rest)
    }
}

/// Kubernetes `$(VAR)` expansion: `$(NAME)` of a defined variable is replaced, `$$(NAME)`
/// is an escaped literal `$(NAME)`, undefined references stay as they are.
pub fn expand(s: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix("$(") {
            out.push_str("$(");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('(') {
            match tail.find(')') {
                Some(end) if env.contains_key(&tail[..end]) => {
                    out.push_str(&env[&tail[..end]]);
                    rest = &tail[end + 1..];
                }
                _ => {
                    out.push_str("$(");
                    rest = tail;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Rewrites an argument that starts with a mount path (`/etc/weir/x`, or `--flag=/etc/weir/x`)
/// to the materialised path under the pod root. The longest matching mount path wins.
pub fn rewrite_path(arg: &str, mounts: &BTreeSet<String>, root: &Path) -> String {
    let (prefix, value) = match arg.split_once('=') {
        Some((flag, v)) if flag.starts_with('-') => (&arg[..flag.len() + 1], v),
        _ => ("", arg),
    };
    let hit = mounts
        .iter()
        .filter(|m| {
            let m = m.trim_end_matches('/');
            value == m || (value.starts_with(m) && value[m.len()..].starts_with('/'))
        })
        .max_by_key(|m| m.len());
    match hit {
        Some(_) if value.starts_with('/') => {
            format!(
                "{prefix}{}",
                root.join(value.trim_start_matches('/')).display()
            )
        }
        _ => arg.to_owned(),
    }
}

/// Pod addresses `PREFIX.2` … `PREFIX.254`, handed out lowest first and reused on release.
#[derive(Debug)]
pub struct IpPool {
    prefix: [u8; 3],
    used: BTreeSet<u8>,
}

impl IpPool {
    pub fn new(prefix: &str) -> Result<Self> {
        let octets: Vec<u8> = prefix
            .split('.')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|_| Error::IpPrefix(prefix.into()))?;
        match octets.as_slice() {
            [127, b, c] => Ok(Self {
                prefix: [127, *b, *c],
                used: BTreeSet::new(),
            }),
            _ => Err(Error::IpPrefix(prefix.into())),
        }
    }

    pub fn allocate(&mut self) -> Result<Ipv4Addr> {
        let n = (2..=254u8)
            .find(|n| !self.used.contains(n))
            .ok_or_else(|| {
                Error::IpsExhausted(format!(
                    "{}.{}.{}",
                    self.prefix[0], self.prefix[1], self.prefix[2]
                ))
            })?;
        self.used.insert(n);
        let [a, b, c] = self.prefix;
        Ok(Ipv4Addr::new(a, b, c, n))
    }

    pub fn release(&mut self, ip: Ipv4Addr) {
        if ip.octets()[..3] == self.prefix {
            self.used.remove(&ip.octets()[3]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_drop_registry_path_tag_and_digest() {
        assert_eq!(image_name("weir-worker"), "weir-worker");
        assert_eq!(image_name("ghcr.io/x/weir-worker:1.2"), "weir-worker");
        assert_eq!(image_name("localhost:5000/weir:dev@sha256:ab"), "weir");
    }

    #[test]
    fn image_flags_must_be_name_equals_path() {
        let m = ImageMap::parse(&["ghcr.io/a/shell:1=/bin/sh".into()]).unwrap();
        assert_eq!(m.binary("shell:2"), Some(Path::new("/bin/sh")));
        assert!(m.binary("other").is_none());
        assert!(ImageMap::parse(&["noequals".into()]).is_err());
    }

    #[test]
    fn command_with_the_binarys_basename_runs_the_mapped_binary() {
        let bin = Path::new("/opt/build/weir");
        let (exe, args) = program(
            bin,
            &["/usr/local/bin/weir".into(), "run".into()],
            &["-v".into()],
        );
        assert_eq!(exe, bin);
        assert_eq!(args, ["run", "-v"]);
        let (exe, args) = program(bin, &[], &["x".into()]);
        assert_eq!((exe.as_path(), args), (bin, vec!["x".to_owned()]));
        let (exe, _) = program(bin, &["/bin/echo".into()], &[]);
        assert_eq!(exe, Path::new("/bin/echo"));
        let (exe, _) = program_for_image("weir", Path::new("/x/weir-dev"), &["weir".into()], &[]);
        assert_eq!(exe, Path::new("/x/weir-dev"));
    }

    #[test]
    fn dollar_paren_references_expand_like_kubernetes() {
        let env = BTreeMap::from([("POD_IP".to_owned(), "127.0.0.5".to_owned())]);
        assert_eq!(expand("--bind=$(POD_IP):80", &env), "--bind=127.0.0.5:80");
        assert_eq!(
            expand("$$(POD_IP) $(NOPE) $HOME", &env),
            "$(POD_IP) $(NOPE) $HOME"
        );
    }

    #[test]
    fn arguments_under_a_mount_path_are_rewritten_to_the_pod_root() {
        let mounts = BTreeSet::from(["/etc/weir".to_owned()]);
        let root = Path::new("/s/pods/u/root");
        assert_eq!(
            rewrite_path("/etc/weir/weir-conf.yaml", &mounts, root),
            "/s/pods/u/root/etc/weir/weir-conf.yaml"
        );
        assert_eq!(
            rewrite_path("--config=/etc/weir/c.yaml", &mounts, root),
            "--config=/s/pods/u/root/etc/weir/c.yaml"
        );
        assert_eq!(rewrite_path("/etc/weirdo", &mounts, root), "/etc/weirdo");
        assert_eq!(rewrite_path("run", &mounts, root), "run");
    }

    #[test]
    fn pod_addresses_are_reused_after_release() {
        let mut pool = IpPool::new("127.0.3").unwrap();
        let a = pool.allocate().unwrap();
        let b = pool.allocate().unwrap();
        assert_eq!(
            (a, b),
            (Ipv4Addr::new(127, 0, 3, 2), Ipv4Addr::new(127, 0, 3, 3))
        );
        pool.release(a);
        assert_eq!(pool.allocate().unwrap(), a);
        assert!(IpPool::new("10.0.0").is_err());
    }
}
