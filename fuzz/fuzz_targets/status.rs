//! The status merge (`report::desired_status`): from any recorded status (as JSON) and any
//! readiness, it never panics, a second pass over its own result changes nothing (steady state
//! writes nothing), and later passes keep each condition's lastTransitionTime unless its status
//! flips.
#![no_main]

use apphealth_operator::{
    api::AppHealthPolicyStatus,
    report::{Observation, Readiness, desired_status, reasons},
};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((head, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let Ok(old) = serde_json::from_slice::<AppHealthPolicyStatus>(rest) else {
        return;
    };
    let readiness = match head[0] % 3 {
        0 => Readiness::Probing {
            message: "probing".into(),
        },
        1 => Readiness::NoTargets {
            reason: reasons::NO_PODS,
            message: "no ready pods".into(),
        },
        _ => Readiness::Stopped {
            reason: reasons::INVALID_SPEC,
            message: "invalid".into(),
            event: "invalid".into(),
        },
    };
    let seen = Observation {
        generation: Some(i64::from(head[1])),
        readiness,
        verdict: None,
        dry_run: head[1] & 1 == 1,
        steps: u32::from(head[1] % 9),
        workload: "Deployment web".into(),
        diagnostics_retention: 5,
    };
    let now = jiff::Timestamp::from_second(1_800_000_000).expect("a time");
    let (first, _) = desired_status(&old, &seen, None, None, now);
    let (second, _) = desired_status(&first, &seen, None, None, now);
    assert_eq!(second, first, "a second pass changed the status");
    let later = now + jiff::SignedDuration::from_hours(1);
    let (third, _) = desired_status(&first, &seen, None, None, later);
    // Conditions are only ever updated in place or appended: compare them position by position.
    for (before, c) in first.conditions.iter().zip(&third.conditions) {
        assert_eq!(before.type_, c.type_);
        if before.status == c.status {
            assert_eq!(before.last_transition_time, c.last_transition_time, "{}", c.type_);
        }
    }
});
