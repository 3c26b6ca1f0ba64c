//! `eventually`: the one way the tests wait for something that happens in the background (a
//! metric moving, a reload applied, a slot freed, a server answering). It polls a condition
//! until it holds or a deadline passes, and then fails saying what it was waiting for.

use std::fmt::Display;
use std::time::Duration;

use tokio::time::Instant;

/// How long [`eventually`] keeps trying.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// The pause between two tries: short, as a try is cheap and most conditions hold at once.
const PAUSE: Duration = Duration::from_millis(20);

/// What one try of a condition says: it holds (with a value), or not yet (with what it saw).
pub trait Outcome {
    type Held;
    /// `Ok` when the condition holds; `Err` with what this try saw, for the failure message.
    fn held(self) -> Result<Self::Held, String>;
}

impl Outcome for bool {
    type Held = ();
    fn held(self) -> Result<(), String> {
        // A bare `false` says nothing more than the condition's name.
        if self {
            Ok(())
        } else {
            Err(String::new())
        }
    }
}

impl<T> Outcome for Option<T> {
    type Held = T;
    fn held(self) -> Result<T, String> {
        self.ok_or_else(|| "None".to_owned())
    }
}

impl<T, E: Display> Outcome for Result<T, E> {
    type Held = T;
    fn held(self) -> Result<T, String> {
        self.map_err(|seen| seen.to_string())
    }
}

/// A condition [`eventually`] can poll: a closure, sync (`|| count() == 3`) or async
/// (`async || gw.metric(series).await == 1.0`), whose answer is an [`Outcome`].
///
/// `Marker` only tells the two kinds apart; it is inferred.
pub trait Condition<Marker> {
    type Answer: Outcome;
    fn try_once(&mut self) -> impl std::future::Future<Output = Self::Answer>;
}

/// The marker of a sync condition.
pub struct Plain;
/// The marker of an async condition.
pub struct Awaited;

impl<F: FnMut() -> A, A: Outcome> Condition<Plain> for F {
    type Answer = A;
    async fn try_once(&mut self) -> A {
        self()
    }
}

impl<F: AsyncFnMut() -> A, A: Outcome> Condition<Awaited> for F {
    type Answer = A;
    async fn try_once(&mut self) -> A {
        self().await
    }
}

/// Polls `condition` until it holds, for [`PATIENCE`] at most; returns what it held with.
/// Past the deadline, panics saying what was awaited (`what`) and what the last try saw.
pub async fn eventually<M, C: Condition<M>>(
    what: &str,
    condition: C,
) -> <C::Answer as Outcome>::Held {
    eventually_within(PATIENCE, what, condition).await
}

/// [`eventually`] with a patience of its own, for what is slow by nature (a server starting).
pub async fn eventually_within<M, C: Condition<M>>(
    patience: Duration,
    what: &str,
    mut condition: C,
) -> <C::Answer as Outcome>::Held {
    let deadline = Instant::now() + patience;
    loop {
        let seen = match condition.try_once().await.held() {
            Ok(held) => return held,
            Err(seen) => seen,
        };
        if Instant::now() >= deadline {
            match seen.as_str() {
                "" => panic!("waited {patience:?} for {what}"),
                seen => panic!("waited {patience:?} for {what}; the last try saw: {seen}"),
            }
        }
        tokio::time::sleep(PAUSE).await;
    }
}

#[tokio::test]
async fn eventually_returns_what_the_condition_held_with() {
    let mut tries = 0;
    let held = eventually("the third try", || {
        tries += 1;
        (tries == 3).then_some(tries)
    })
    .await;
    assert_eq!(held, 3);
    let mut left = 2;
    eventually("an async countdown", async || {
        left -= 1;
        left == 0
    })
    .await;
}

#[tokio::test]
#[should_panic(expected = "waited 50ms for the impossible; the last try saw: still 7")]
async fn eventually_fails_saying_what_was_awaited_and_what_it_saw() {
    eventually_within(Duration::from_millis(50), "the impossible", || {
        Err::<(), _>("still 7")
    })
    .await;
}
