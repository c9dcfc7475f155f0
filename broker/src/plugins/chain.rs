//! Conditional-chain semantics (VerneMQ's `all_till_ok`), independent of
//! wasm: walk the plugins in order; `ok` or `error` stops the walk, `next`
//! goes on; a failed call (trap, fuel, memory, deadline, disabled plugin)
//! stops it with a refusal, unless the plugin's failure policy says to treat
//! failures as `next`.

use std::future::Future;

/// What a hook answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<T, E> {
    Ok(T),
    Next,
    Error(E),
}

/// What a plugin's failed call counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// Fail closed: the client is refused.
    Deny,
    /// Fail open: as if the plugin had answered `next`.
    Next,
}

/// How a walk ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<T, E, F> {
    /// Plugin `index` accepted.
    Accepted { index: usize, value: T },
    /// Plugin `index` refused.
    Refused { index: usize, error: E },
    /// Plugin `index` failed and fails closed.
    Failed { index: usize, failure: F },
    /// Every plugin answered `next` (or failed open).
    Exhausted,
}

/// Walks `plugins` in order with `call` until one decides. `on_failed_open`
/// is told of failures that the policy turned into `next`, for logging.
pub async fn walk<'a, P, T, E, F, Fut>(
    plugins: &'a [P],
    mut call: impl FnMut(&'a P) -> Fut,
    policy: impl Fn(&P) -> FailurePolicy,
    mut on_failed_open: impl FnMut(&P, &F),
) -> Outcome<T, E, F>
where
    Fut: Future<Output = Result<Answer<T, E>, F>>,
{
    for (index, plugin) in plugins.iter().enumerate() {
        match call(plugin).await {
            Ok(Answer::Ok(value)) => return Outcome::Accepted { index, value },
            Ok(Answer::Error(error)) => return Outcome::Refused { index, error },
            Ok(Answer::Next) => {}
            Err(failure) => match policy(plugin) {
                FailurePolicy::Deny => return Outcome::Failed { index, failure },
                FailurePolicy::Next => on_failed_open(plugin, &failure),
            },
        }
    }
    Outcome::Exhausted
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    /// A scripted plugin: its answer (or failure) and its policy.
    struct Scripted {
        name: &'static str,
        answer: Result<Answer<&'static str, &'static str>, &'static str>,
        policy: FailurePolicy,
    }

    fn p(
        name: &'static str,
        answer: Result<Answer<&'static str, &'static str>, &'static str>,
    ) -> Scripted {
        Scripted {
            name,
            answer,
            policy: FailurePolicy::Deny,
        }
    }

    async fn run(
        chain: &[Scripted],
    ) -> (
        Outcome<&'static str, &'static str, &'static str>,
        Vec<&'static str>,
        Vec<&'static str>,
    ) {
        let called = RefCell::new(Vec::new());
        let mut opened = Vec::new();
        let outcome = walk(
            chain,
            |s| {
                called.borrow_mut().push(s.name);
                let answer = s.answer.clone();
                async move { answer }
            },
            |s| s.policy,
            |s, _| opened.push(s.name),
        )
        .await;
        (outcome, called.into_inner(), opened)
    }

    #[tokio::test]
    async fn next_next_ok_stops_at_ok() {
        let chain = [
            p("a", Ok(Answer::Next)),
            p("b", Ok(Answer::Next)),
            p("c", Ok(Answer::Ok("yes"))),
            p("d", Err("never called")),
        ];
        let (outcome, called, _) = run(&chain).await;
        assert_eq!(
            outcome,
            Outcome::Accepted {
                index: 2,
                value: "yes"
            }
        );
        assert_eq!(called, ["a", "b", "c"]);
    }

    #[tokio::test]
    async fn error_stops_the_chain() {
        let chain = [
            p("a", Ok(Answer::Error("no"))),
            p("b", Ok(Answer::Ok("yes"))),
        ];
        let (outcome, called, _) = run(&chain).await;
        assert_eq!(
            outcome,
            Outcome::Refused {
                index: 0,
                error: "no"
            }
        );
        assert_eq!(called, ["a"]);
    }

    #[tokio::test]
    async fn all_next_is_exhausted() {
        let chain = [p("a", Ok(Answer::Next)), p("b", Ok(Answer::Next))];
        assert_eq!(run(&chain).await.0, Outcome::Exhausted);
        assert_eq!(run(&[]).await.0, Outcome::Exhausted);
    }

    #[tokio::test]
    async fn failures_deny_or_pass_by_policy() {
        let chain = [p("a", Err("trap")), p("b", Ok(Answer::Ok("yes")))];
        let (outcome, called, _) = run(&chain).await;
        assert_eq!(
            outcome,
            Outcome::Failed {
                index: 0,
                failure: "trap"
            }
        );
        assert_eq!(called, ["a"]);

        let open = Scripted {
            policy: FailurePolicy::Next,
            ..p("a", Err("trap"))
        };
        let chain = [open, p("b", Ok(Answer::Ok("yes")))];
        let (outcome, called, opened) = run(&chain).await;
        assert_eq!(
            outcome,
            Outcome::Accepted {
                index: 1,
                value: "yes"
            }
        );
        assert_eq!(called, ["a", "b"]);
        assert_eq!(opened, ["a"]);
    }
}
