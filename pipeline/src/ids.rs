//! Deterministic ids and seeds: everything is a pure function of the run seed, the global task
//! index, the task id and the sample index, so reruns, resumes and shards agree.

use sha2::{Digest, Sha256};

fn digest(parts: &[&str]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    h.finalize().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lowercase hex SHA-256 of `bytes` (manifest hashes).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Id of sample `k` of the task at global `index` of a run with `seed`.
pub fn sample_id(seed: u64, index: u64, task_id: &str, k: u32) -> String {
    let d = digest(&[
        "agentgen/sample/v1",
        &seed.to_string(),
        &index.to_string(),
        task_id,
        &k.to_string(),
    ]);
    format!("s-{}", hex(&d[..12]))
}

/// Id of the group of samples of one task.
pub fn group_id(seed: u64, index: u64, task_id: &str) -> String {
    let d = digest(&["agentgen/group/v1", &seed.to_string(), &index.to_string(), task_id]);
    format!("g-{}", hex(&d[..12]))
}

/// Sampling seed of one sample (one RNG stream per sequence).
pub fn sample_seed(seed: u64, sample_id: &str) -> u64 {
    let d = digest(&["agentgen/seed/v1", &seed.to_string(), sample_id]);
    u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// Id of a run: a hash of everything that determines its rows (not of the shard, the
/// concurrency or the output folder, so the shards of one job array share it).
pub fn run_id(fingerprint: &str) -> String {
    let d = digest(&["agentgen/run/v1", fingerprint]);
    format!("r-{}", hex(&d[..8]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = sample_id(1, 0, "trip@1/2/3", 0);
        assert_eq!(a, sample_id(1, 0, "trip@1/2/3", 0));
        assert_ne!(a, sample_id(1, 0, "trip@1/2/3", 1));
        assert_ne!(a, sample_id(1, 1, "trip@1/2/3", 0));
        assert_ne!(a, sample_id(2, 0, "trip@1/2/3", 0));
        assert_ne!(sample_seed(1, &a), sample_seed(2, &a));
        assert_eq!(a.len(), 26);
    }
}
