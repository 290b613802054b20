//! Entry signatures, with an authkey (the driver's `PoolBuilder::authkey`, worker mode's
//! `MULTIPROC_REDIS_AUTHKEY`): each task entry carries `h`, an HMAC-SHA256 of its driver,
//! sequence number, max deliveries and call under the key, and each answer an HMAC of its
//! driver, sequence number and reply. A worker drops a task whose `h` does not verify before
//! decoding anything (and posts nothing: an answer to a forged entry would let its forger fail
//! a real one); a driver drops an answer whose `h` does not verify (and counts it). So whoever
//! can write the cluster's keys but has not the key can neither make a worker run anything nor
//! give a driver a result.
//!
//! The key also names the streams: the build part of every key becomes `{fingerprint}-{key
//! id}` (8 hex digits of an HMAC of a constant), so workers with another key (or none) never
//! read the tasks, and discovery counts them as others.
//!
//! What is not signed: the "lost" answers (`k = l`) the reclaim script writes inside Redis,
//! which holds no key (a forged one can only fail an item with `WorkerLost`), the delivery
//! count of an answer (statistics only), and liveness and registration keys. A replayed
//! signed task runs again (its answer is a duplicate, dropped); a replayed answer is a
//! duplicate too (driver ids are random, so an answer never verifies for another driver).

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The authkey of a Redis pool or worker.
#[derive(Clone)]
pub(crate) struct Signer {
    key: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(<authkey>)")
    }
}

impl Signer {
    /// `None` for no key (unsigned entries).
    pub fn new(key: Option<&[u8]>) -> Option<Signer> {
        key.map(|k| Signer { key: k.to_vec() })
    }

    fn mac(&self, domain: &[u8], parts: &[&[u8]]) -> HmacSha256 {
        let mut m = <HmacSha256 as Mac>::new_from_slice(&self.key).expect("HMAC takes any key");
        m.update(domain);
        for p in parts {
            // (each part after its length: no two lists of parts hash the same bytes)
            m.update(&(p.len() as u64).to_le_bytes());
            m.update(p);
        }
        m
    }

    /// 8 hex digits that name the key (not the key: an HMAC of a constant under it).
    pub fn key_id(&self) -> String {
        let d = self
            .mac(b"multiproc-redis-key-id", &[])
            .finalize()
            .into_bytes();
        d[..4].iter().map(|b| format!("{b:02x}")).collect()
    }

    fn task_mac(&self, driver: &str, seq: u64, max_deliveries: u64, call: &[u8]) -> HmacSha256 {
        self.mac(
            b"multiproc-redis-task",
            &[
                driver.as_bytes(),
                &seq.to_le_bytes(),
                &max_deliveries.to_le_bytes(),
                call,
            ],
        )
    }

    fn reply_mac(&self, driver: &str, seq: u64, reply: &[u8]) -> HmacSha256 {
        self.mac(
            b"multiproc-redis-reply",
            &[driver.as_bytes(), &seq.to_le_bytes(), reply],
        )
    }

    /// The `h` of a task entry.
    pub fn sign_task(&self, driver: &str, seq: u64, max_deliveries: u64, call: &[u8]) -> Vec<u8> {
        self.task_mac(driver, seq, max_deliveries, call)
            .finalize()
            .into_bytes()
            .to_vec()
    }

    /// Whether `h` is a task entry's signature (in constant time).
    pub fn verify_task(
        &self,
        driver: &str,
        seq: u64,
        max_deliveries: u64,
        call: &[u8],
        h: &[u8],
    ) -> bool {
        self.task_mac(driver, seq, max_deliveries, call)
            .verify_slice(h)
            .is_ok()
    }

    /// The `h` of an answer.
    pub fn sign_reply(&self, driver: &str, seq: u64, reply: &[u8]) -> Vec<u8> {
        self.reply_mac(driver, seq, reply)
            .finalize()
            .into_bytes()
            .to_vec()
    }

    /// Whether `h` is an answer's signature (in constant time).
    pub fn verify_reply(&self, driver: &str, seq: u64, reply: &[u8], h: &[u8]) -> bool {
        self.reply_mac(driver, seq, reply).verify_slice(h).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::Signer;

    #[test]
    fn signatures_verify_only_with_the_same_key_and_fields() {
        let s = Signer::new(Some(b"secret")).unwrap();
        let other = Signer::new(Some(b"secreT")).unwrap();
        let h = s.sign_task("ab12", 7, 3, b"call");
        assert!(s.verify_task("ab12", 7, 3, b"call", &h));
        assert!(!other.verify_task("ab12", 7, 3, b"call", &h));
        assert!(!s.verify_task("ab13", 7, 3, b"call", &h));
        assert!(!s.verify_task("ab12", 8, 3, b"call", &h));
        assert!(!s.verify_task("ab12", 7, 4, b"call", &h));
        assert!(!s.verify_task("ab12", 7, 3, b"calm", &h));
        assert!(!s.verify_task("ab12", 7, 3, b"call", &h[..31]));
        assert!(!s.verify_task("ab12", 7, 3, b"call", b""));
        let r = s.sign_reply("ab12", 7, b"reply");
        assert!(s.verify_reply("ab12", 7, b"reply", &r));
        assert!(!s.verify_reply("ab12", 7, b"replz", &r));
        assert!(
            !s.verify_reply("ab12", 7, b"call", &h),
            "a task's h is no answer's"
        );
        assert_ne!(s.key_id(), other.key_id());
        assert_eq!(s.key_id().len(), 8);
        assert!(!format!("{s:?}").contains("secret"));
    }
}
