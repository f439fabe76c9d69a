//! Which shard a session belongs to, and which live node should own a shard.
//!
//! A session's shard is a stable hash of its key (the same on every node and every build:
//! FNV-1a, not std's hasher). A shard's preferred owner is chosen by rendezvous hashing over
//! the live members: when a node joins or leaves, only the shards it wins or held move.

use troupe_actors::SessionKey;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash = FNV_OFFSET;
    for part in parts {
        for byte in *part {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(FNV_PRIME);
        }
        hash ^= 0xff;
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// splitmix64's finalizer: spreads FNV's output so rendezvous weights are well mixed.
fn mix(mut value: u64) -> u64 {
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

/// The shard of a session, in `0..shards`.
pub fn shard_of(key: &SessionKey, shards: u32) -> u32 {
    let hash = mix(fnv1a(&[
        key.platform().as_bytes(),
        key.conversation_id().as_bytes(),
    ]));
    (hash % u64::from(shards.max(1))) as u32
}

/// The member that should own `shard`: the highest rendezvous weight wins.
pub fn preferred_owner<'a>(
    shard: u32,
    members: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    members.into_iter().max_by_key(|member| {
        (
            mix(fnv1a(&[member.as_bytes(), &shard.to_le_bytes()])),
            *member,
        )
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn shards_spread_sessions_evenly() {
        let mut counts = vec![0u32; 16];
        for index in 0..16_000 {
            let key = SessionKey::new_unchecked("ws", &format!("user-{index}"));
            counts[shard_of(&key, 16) as usize] += 1;
        }
        assert!(
            counts.iter().all(|count| (800..1200).contains(count)),
            "{counts:?}"
        );
    }

    #[test]
    fn owners_spread_and_only_a_leavers_shards_move() {
        let three = ["node-a", "node-b", "node-c"];
        let before: Vec<&str> = (0..256)
            .map(|shard| preferred_owner(shard, three).unwrap())
            .collect();
        let mut per_node: HashMap<&str, u32> = HashMap::new();
        for owner in &before {
            *per_node.entry(owner).or_default() += 1;
        }
        assert!(
            per_node.values().all(|count| (60..110).contains(count)),
            "{per_node:?}"
        );
        let two = ["node-a", "node-c"];
        for (shard, owner) in before.iter().enumerate() {
            let after = preferred_owner(shard as u32, two).unwrap();
            if *owner != "node-b" {
                assert_eq!(after, *owner, "shard {shard} moved without reason");
            }
        }
        assert_eq!(preferred_owner(0, []), None);
    }

    proptest! {
        #[test]
        fn a_shard_is_always_in_range_and_stable(platform in "[a-z]{1,8}", conversation in "\\PC{1,40}", shards in 1u32..512) {
            let key = SessionKey::new_unchecked(&platform, &conversation);
            let shard = shard_of(&key, shards);
            prop_assert!(shard < shards);
            let rebuilt = SessionKey::new_unchecked(&platform, &conversation);
            prop_assert_eq!(shard, shard_of(&rebuilt, shards));
        }

        #[test]
        fn the_owner_does_not_depend_on_member_order(mut members in proptest::collection::vec("[a-z0-9-]{1,12}", 1..8), shard in 0u32..1024) {
            let first = preferred_owner(shard, members.iter().map(String::as_str)).map(str::to_owned);
            members.reverse();
            let second = preferred_owner(shard, members.iter().map(String::as_str)).map(str::to_owned);
            prop_assert_eq!(first, second);
        }
    }
}
