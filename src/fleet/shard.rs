//! Which shard a workload belongs to, when `--shards N` replicas share the work: a stable hash of
//! the workload's namespace, kind and name (FNV-1a, 64 bits: the same on every replica, version
//! and platform), mapped to a shard by jump consistent hashing (Lamping and Veach, 2014), so that
//! going from N to N+1 shards moves only about 1/(N+1) of the workloads. A selector policy's
//! workloads spread across the shards like any others.

/// The shard (0 ≤ shard < `shards`) of the workload `namespace`/`kind`/`name`; with one shard (or
/// none), shard 0.
pub fn shard_of(namespace: &str, kind: &str, name: &str, shards: u32) -> u32 {
    if shards <= 1 {
        return 0;
    }
    jump(key(namespace, kind, name), shards)
}

/// The key of a workload: FNV-1a over the three parts, each ended by a byte no name contains, so
/// ("a", "bc") and ("ab", "c") differ.
fn key(namespace: &str, kind: &str, name: &str) -> u64 {
    fnv1a(
        [namespace, kind, name]
            .iter()
            .flat_map(|part| part.bytes().chain(std::iter::once(0xff))),
    )
}

/// FNV-1a, 64 bits.
fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .into_iter()
        .fold(OFFSET, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(PRIME))
}

/// Jump consistent hashing: the bucket of `key` among `buckets`.
fn jump(mut key: u64, buckets: u32) -> u32 {
    let (mut bucket, mut next) = (0u64, 0u64);
    while next < u64::from(buckets) {
        bucket = next;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        let step = (1u64 << 31) as f64 / ((key >> 33) + 1) as f64;
        next = ((bucket + 1) as f64 * step) as u64;
    }
    u32::try_from(bucket).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PINNED: [u32; 5] = [0, 1, 2, 1, 0];

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("svc-{i}")).collect()
    }

    #[test]
    fn one_shard_or_none_is_shard_zero() {
        for shards in [0, 1] {
            assert_eq!(shard_of("shop", "Deployment", "web", shards), 0);
        }
    }

    #[test]
    fn every_replica_computes_the_same_shard() {
        // FNV-1a's published test vectors.
        assert_eq!(fnv1a(*b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(*b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(*b"foobar"), 0x8594_4171_f739_67e8);
        // Jump consistent hashing's reference vectors (key, buckets, bucket).
        for (key, buckets, want) in [
            (1, 1, 0),
            (42, 57, 43),
            (0xDEAD_10CC, 1, 0),
            (0xDEAD_10CC, 666, 361),
            (256, 1024, 520),
        ] {
            assert_eq!(jump(key, buckets), want, "jump({key}, {buckets})");
        }
        // The assignment of this release, pinned: a change here would move workloads between
        // replicas of different versions during an upgrade.
        let pinned: Vec<u32> = ["web", "api", "db", "cart", "search"]
            .iter()
            .map(|n| shard_of("shop", "Deployment", n, 3))
            .collect();
        assert_eq!(pinned, PINNED);
        assert_ne!(key("a", "bc", "d"), key("ab", "c", "d"), "parts are kept apart");
    }

    #[test]
    fn workloads_spread_evenly() {
        for shards in [2u32, 3, 5] {
            let mut counts = vec![0usize; shards as usize];
            for name in names(3000) {
                let s = shard_of("shop", "Deployment", &name, shards);
                assert!(s < shards);
                counts[s as usize] += 1;
            }
            let fair = 3000 / shards as usize;
            for c in &counts {
                let off = (*c as f64 - fair as f64).abs() / fair as f64;
                assert!(off <= 0.10, "{shards} shards: {counts:?}");
            }
        }
    }

    #[test]
    fn a_new_shard_moves_only_its_share() {
        let all = names(3000);
        let moved = all
            .iter()
            .filter(|n| shard_of("shop", "Deployment", n, 3) != shard_of("shop", "Deployment", n, 4))
            .count();
        // A quarter of the workloads belong to the fourth shard; nothing else moves.
        let share = moved as f64 / all.len() as f64;
        assert!((0.2..=0.3).contains(&share), "moved {moved} of {}", all.len());
        assert!(all.iter().all(|n| {
            let (before, after) = (
                shard_of("shop", "Deployment", n, 3),
                shard_of("shop", "Deployment", n, 4),
            );
            before == after || after == 3
        }));
    }
}
