//! The model-based property test: random operation sequences checked step
//! by step against an in-memory reference model.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use sessionkit_core::{Error, Record, SessionId, SessionStore, Timestamp};

use crate::cases::unique_subject;

/// Number of distinct IDs one case works on.
const ID_POOL: usize = 3;
/// Number of distinct subjects one case works on.
const SUBJECT_POOL: usize = 3;
/// Longest operation sequence of one case (keeps a case against a network
/// store in the low milliseconds).
const MAX_OPS: usize = 20;
/// Upper bound on shrinking steps after a failure.
const MAX_SHRINK_ITERS: u32 = 1_000;
/// Environment variable holding a seed (decimal u64) to replay a run.
pub const SEED_ENV: &str = "SESSIONKIT_PROPTEST_SEED";

/// Which version a generated `save` carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    /// The version the model holds (or 1 for an absent record).
    Current,
    /// One less: a lost update.
    Behind,
    /// One more: a version the store never had.
    Ahead,
}

/// Where a generated `touch` moves the expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TouchTo {
    /// This many milliseconds after the far default expiry.
    Later(u32),
    /// A minute in the past: the record is expired from then on.
    Past,
}

/// One generated operation; IDs and subjects are indices into the case's
/// pools, so the `Debug` output of a failing sequence holds no secrets.
#[derive(Debug, Clone)]
enum Op {
    Create {
        id: usize,
        subject: Option<usize>,
        payload: Vec<u8>,
    },
    Load {
        id: usize,
    },
    Save {
        id: usize,
        version: Version,
        subject: Option<usize>,
        payload: Vec<u8>,
        extend_ms: u32,
    },
    Touch {
        id: usize,
        to: TouchTo,
    },
    Delete {
        id: usize,
    },
    CompareAndDelete {
        id: usize,
        version: Version,
    },
    DeleteSubject {
        subject: usize,
    },
    ListSubject {
        subject: usize,
    },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let id = || 0..ID_POOL;
    let subject = || proptest::option::weighted(0.8, 0..SUBJECT_POOL);
    let payload = || proptest::collection::vec(any::<u8>(), 0..24);
    let version = prop_oneof![
        4 => Just(Version::Current),
        1 => Just(Version::Behind),
        1 => Just(Version::Ahead),
    ];
    let touch_to = prop_oneof![
        4 => (0u32..100_000).prop_map(TouchTo::Later),
        1 => Just(TouchTo::Past),
    ];
    prop_oneof![
        4 => (id(), subject(), payload())
            .prop_map(|(id, subject, payload)| Op::Create { id, subject, payload }),
        3 => id().prop_map(|id| Op::Load { id }),
        4 => (id(), version, subject(), payload(), 0u32..100_000).prop_map(
            |(id, version, subject, payload, extend_ms)| Op::Save {
                id,
                version,
                subject,
                payload,
                extend_ms,
            }
        ),
        2 => (id(), touch_to).prop_map(|(id, to)| Op::Touch { id, to }),
        2 => id().prop_map(|id| Op::Delete { id }),
        2 => (
            id(),
            prop_oneof![
                3 => Just(Version::Current),
                1 => Just(Version::Behind),
                1 => Just(Version::Ahead),
            ]
        )
            .prop_map(|(id, version)| Op::CompareAndDelete { id, version }),
        1 => (0..SUBJECT_POOL).prop_map(|subject| Op::DeleteSubject { subject }),
        2 => (0..SUBJECT_POOL).prop_map(|subject| Op::ListSubject { subject }),
    ]
}

fn sequence_strategy() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op_strategy(), 1..=MAX_OPS)
}

/// An error reduced to the variant the contract prescribes.
fn variant(e: &Error) -> String {
    match e {
        Error::Conflict => "Conflict".into(),
        Error::NotFound => "NotFound".into(),
        other => format!("unexpected error {other:?}"),
    }
}

fn outcome<T>(result: sessionkit_core::Result<T>) -> Result<T, String> {
    result.map_err(|e| variant(&e))
}

fn check<T: PartialEq + std::fmt::Debug>(
    step: usize,
    op: &Op,
    expected: Result<T, &str>,
    got: Result<T, String>,
) -> Result<(), String> {
    let expected = expected.map_err(str::to_owned);
    if expected == got {
        Ok(())
    } else {
        Err(format!(
            "step {step} {op:?}: the model expected {expected:?}, the store returned {got:?}"
        ))
    }
}

fn sorted(mut records: Vec<Record>) -> Vec<Record> {
    records.sort_by_key(|a| a.id);
    records
}

/// Runs one operation sequence on fresh IDs and subjects, comparing every
/// result with the reference model.
async fn run_sequence<S: SessionStore + ?Sized>(store: &S, ops: &[Op]) -> Result<(), String> {
    let ids: Vec<SessionId> = (0..ID_POOL).map(|_| SessionId::generate()).collect();
    let subjects: Vec<String> = (0..SUBJECT_POOL)
        .map(|i| unique_subject(&format!("model{i}")))
        .collect();
    let base = Timestamp::now();
    let far = base + Duration::from_secs(3600);
    // The live records, by pool index.
    let mut model: HashMap<usize, Record> = HashMap::new();
    let subject_of = |s: &Option<usize>| s.map(|i| subjects[i].clone());

    let result = async {
        for (step, op) in ops.iter().enumerate() {
            match op {
                Op::Create {
                    id,
                    subject,
                    payload,
                } => {
                    let record = Record::new(
                        ids[*id],
                        subject_of(subject),
                        Bytes::from(payload.clone()),
                        base,
                        far,
                    );
                    let expected = if model.contains_key(id) {
                        Err("Conflict")
                    } else {
                        model.insert(*id, record.clone());
                        Ok(())
                    };
                    check(step, op, expected, outcome(store.create(&record).await))?;
                }
                Op::Load { id } => {
                    let expected = Ok(model.get(id).cloned());
                    check(step, op, expected, outcome(store.load(&ids[*id]).await))?;
                }
                Op::Save {
                    id,
                    version,
                    subject,
                    payload,
                    extend_ms,
                } => {
                    let current = model.get(id).map_or(1, |r| r.version);
                    let version = match version {
                        Version::Current => current,
                        Version::Behind => current - 1,
                        Version::Ahead => current + 1,
                    };
                    let mut record = Record::new(
                        ids[*id],
                        subject_of(subject),
                        Bytes::from(payload.clone()),
                        base + Duration::from_millis(step as u64 + 1),
                        far + Duration::from_millis(u64::from(*extend_ms)),
                    );
                    record.version = version;
                    let expected = match model.get_mut(id) {
                        None => Err("NotFound"),
                        Some(stored) if stored.version != version => Err("Conflict"),
                        Some(stored) => {
                            *stored = Record {
                                version: version + 1,
                                ..record.clone()
                            };
                            Ok(version + 1)
                        }
                    };
                    check(step, op, expected, outcome(store.save(&record).await))?;
                }
                Op::Touch { id, to } => {
                    let expires_at = match to {
                        TouchTo::Later(ms) => far + Duration::from_millis(u64::from(*ms) + 1),
                        TouchTo::Past => base - Duration::from_secs(60),
                    };
                    let expected = match model.get_mut(id) {
                        None => Err("NotFound"),
                        Some(stored) => {
                            stored.expires_at = expires_at;
                            Ok(())
                        }
                    };
                    if *to == TouchTo::Past && expected.is_ok() {
                        model.remove(id);
                    }
                    check(
                        step,
                        op,
                        expected,
                        outcome(store.touch(&ids[*id], expires_at).await),
                    )?;
                }
                Op::Delete { id } => {
                    let expected = Ok(model.remove(id).is_some());
                    check(step, op, expected, outcome(store.delete(&ids[*id]).await))?;
                }
                Op::CompareAndDelete { id, version } => {
                    let current = model.get(id).map_or(1, |r| r.version);
                    let version = match version {
                        Version::Current => current,
                        Version::Behind => current - 1,
                        Version::Ahead => current + 1,
                    };
                    let expected = match model.get(id) {
                        None => Err("NotFound"),
                        Some(stored) if stored.version != version => Err("Conflict"),
                        Some(_) => {
                            model.remove(id);
                            Ok(())
                        }
                    };
                    check(
                        step,
                        op,
                        expected,
                        outcome(store.compare_and_delete(&ids[*id], version).await),
                    )?;
                }
                Op::DeleteSubject { subject } => {
                    let name = &subjects[*subject];
                    let before = model.len();
                    model.retain(|_, r| r.subject.as_deref() != Some(name.as_str()));
                    let expected = Ok((before - model.len()) as u64);
                    check(
                        step,
                        op,
                        expected,
                        outcome(store.delete_subject(name).await),
                    )?;
                }
                Op::ListSubject { subject } => {
                    let name = &subjects[*subject];
                    let expected = Ok(sorted(
                        model
                            .values()
                            .filter(|r| r.subject.as_deref() == Some(name.as_str()))
                            .cloned()
                            .collect(),
                    ));
                    let got = outcome(store.list_subject(name).await).map(sorted);
                    check(step, op, expected, got)?;
                }
            }
        }
        Ok(())
    }
    .await;

    // Leave nothing behind in a shared backend.
    for id in &ids {
        let _ = store.delete(id).await;
    }
    result
}

fn seed() -> u64 {
    if let Ok(text) = std::env::var(SEED_ENV) {
        if let Ok(seed) = text.trim().parse() {
            return seed;
        }
        panic!("{SEED_ENV} must be a decimal u64, got {text:?}");
    }
    let raw = SessionId::generate().to_bytes();
    u64::from_le_bytes(raw[..8].try_into().unwrap_or_default())
}

/// The model-based property test.
///
/// Calls `store_factory` once (returning early when it yields `None`, that
/// is when the backend was skipped), then runs random sequences of up to 20
/// operations (`create`, `load`, `save` with the current, a stale or a
/// future version, `touch` later or into the past, `delete`,
/// `delete_subject`, `list_subject`) over a pool of 3 IDs and 3 subjects,
/// comparing every result — records field by field, counts, and the
/// `Conflict` / `NotFound` variants — with an in-memory reference model.
///
/// Every case draws fresh IDs and subjects, so cases never see each other's
/// records, and it deletes its IDs when done. 256 cases by default;
/// `PROPTEST_CASES` overrides. A failing sequence is shrunk and reported
/// with the seed; set `SESSIONKIT_PROPTEST_SEED` to that seed to replay the
/// run.
///
/// This function runs on any Tokio runtime (no `block_in_place`).
///
/// ```no_run
/// # async fn demo() {
/// # async fn make_store() -> Option<std::sync::Arc<dyn sessionkit_core::SessionStore>> { None }
/// sessionkit_testkit::model_based(make_store).await;
/// # }
/// ```
pub async fn model_based<S, F, Fut>(store_factory: F)
where
    S: SessionStore,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Option<S>>,
{
    let Some(store) = store_factory().await else {
        return;
    };
    let config = Config::default();
    let cases = config.cases;
    let seed = seed();
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &bytes);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let strategy = sequence_strategy();

    for case in 0..cases {
        let mut tree = match strategy.new_tree(&mut runner) {
            Ok(tree) => tree,
            Err(reason) => panic!("could not generate a case: {reason}"),
        };
        let Err(first_failure) = run_sequence(&store, &tree.current()).await else {
            continue;
        };
        // Shrink: simplify while it still fails, complicate when it passes.
        let mut failure = (tree.current(), first_failure);
        let mut iterations = 0;
        if tree.simplify() {
            while iterations < MAX_SHRINK_ITERS {
                iterations += 1;
                let candidate = tree.current();
                let still_fails = match run_sequence(&store, &candidate).await {
                    Err(message) => {
                        failure = (candidate, message);
                        true
                    }
                    Ok(()) => false,
                };
                let moved = if still_fails {
                    tree.simplify()
                } else {
                    tree.complicate()
                };
                if !moved {
                    break;
                }
            }
        }
        let (ops, message) = failure;
        panic!(
            "model-based test failed at case {case} of {cases} \
             (replay with {SEED_ENV}={seed}); minimal sequence ({} ops): {ops:#?}\n{message}",
            ops.len()
        );
    }
}
