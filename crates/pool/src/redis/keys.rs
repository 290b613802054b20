//! The names of everything the Redis backend keeps, and the fields of its stream entries.
//!
//! Every key starts with `mp:{CLUSTER}:` — the braces are Redis Cluster's hash tag, so all the
//! keys of one cluster live in one slot and its scripts may touch several — and every key of
//! work names the build ([`fingerprint`](multiproc_pickle::fingerprint), 16 hex digits): a
//! worker of another build reads another stream and never sees the task. With an authkey the
//! build part is `{fingerprint}-{key id}` (see `sign.rs`): workers with another key, or none,
//! read another stream too.
//!
//! | key | type | what |
//! |---|---|---|
//! | `mp:{c}:{build}:tasks` | stream, group `workers` | one entry per chunk: `d` driver, `s` sequence number, `m` max deliveries, `c` the encoded call, `h` its signature (with an authkey) |
//! | `mp:{c}:{build}:results:{driver}` | stream | one entry per answer: `s`, `k` (`r` reply, `l` lost), `n` deliveries, `r` the encoded reply, `h` its signature (with an authkey; empty otherwise) |
//! | `mp:{c}:{build}:driver:{driver}` | string with a TTL | the driver is alive (workers skip the tasks of a dead one) |
//! | `mp:{c}:workers` | sorted set | live workers, `{build}|{host}|{pid}|{nonce}`, scored by the expiry of their registration (server time, ms) |

use super::sign::Signer;
use crate::PoolError;

/// The consumer group every worker of a build reads the tasks stream through.
pub(crate) const GROUP: &str = "workers";

/// The keys of one cluster and build.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    /// `mp:{cluster}:`
    cluster_prefix: String,
    /// `mp:{cluster}:{build}:`
    prefix: String,
    /// 16 hex digits, then `-` and the key id with an authkey.
    pub build: String,
}

impl Keys {
    /// The keys of `cluster` for the running build (and authkey).
    pub fn new(cluster: &str, signer: Option<&Signer>) -> Result<Keys, PoolError> {
        Keys::for_build(cluster, multiproc_pickle::fingerprint(), signer)
    }

    pub fn for_build(
        cluster: &str,
        fingerprint: u64,
        signer: Option<&Signer>,
    ) -> Result<Keys, PoolError> {
        check_cluster(cluster)?;
        let build = match signer {
            None => format!("{fingerprint:016x}"),
            Some(s) => format!("{fingerprint:016x}-{}", s.key_id()),
        };
        Ok(Keys {
            cluster_prefix: format!("mp:{{{cluster}}}:"),
            prefix: format!("mp:{{{cluster}}}:{build}:"),
            build,
        })
    }

    pub fn tasks(&self) -> String {
        format!("{}tasks", self.prefix)
    }

    /// The prefix of every driver's results stream (the reclaim script appends the driver).
    pub fn results_prefix(&self) -> String {
        format!("{}results:", self.prefix)
    }

    pub fn results(&self, driver: &str) -> String {
        format!("{}results:{driver}", self.prefix)
    }

    pub fn driver(&self, driver: &str) -> String {
        format!("{}driver:{driver}", self.prefix)
    }

    pub fn workers(&self) -> String {
        format!("{}workers", self.cluster_prefix)
    }
}

/// A cluster name: 1 to 64 characters of letters, digits, `-`, `_` and `.` (no braces, which
/// would change the hash tag, and no `:`, which separates the parts of a key).
fn check_cluster(name: &str) -> Result<(), PoolError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(PoolError::InvalidArgument(
            "a cluster name is 1 to 64 letters, digits, '-', '_' or '.'",
        ))
    }
}

/// A driver's id: 16 hex digits, random.
pub(crate) fn new_driver_id() -> String {
    format!("{:016x}", nonce())
}

/// A random 64-bit number (the OS's randomness through std's hasher keys, mixed with the time
/// and the pid: ids only need to differ, not to be secret).
pub(crate) fn nonce() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_the_cluster_hash_tag_and_name_the_build() {
        let k = Keys::for_build("prod", 0xabc, None).unwrap();
        assert_eq!(k.tasks(), "mp:{prod}:0000000000000abc:tasks");
        assert_eq!(k.results("ff"), "mp:{prod}:0000000000000abc:results:ff");
        assert_eq!(k.driver("ff"), "mp:{prod}:0000000000000abc:driver:ff");
        assert_eq!(k.workers(), "mp:{prod}:workers");
        let s = Signer::new(Some(b"key")).unwrap();
        let signed = Keys::for_build("prod", 0xabc, Some(&s)).unwrap();
        assert_eq!(
            signed.tasks(),
            format!("mp:{{prod}}:0000000000000abc-{}:tasks", s.key_id())
        );
        assert!(Keys::new("a{b", None).is_err());
        assert!(Keys::new("", None).is_err());
        assert!(Keys::new("a:b", None).is_err());
        assert!(Keys::new(&"x".repeat(65), None).is_err());
        assert_ne!(new_driver_id(), new_driver_id());
    }
}
