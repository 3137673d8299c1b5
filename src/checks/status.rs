//! Consecutive-result thresholds (SuccessBeforePassing, FailuresBeforeWarning,
//! FailuresBeforeCritical), as Consul's agent applies them to interval checks.
use super::Status;

#[derive(Debug, Clone)]
pub(crate) struct StatusHandler {
    success_before_passing: u32,
    failures_before_warning: u32,
    failures_before_critical: u32,
    successes: u32,
    failures: u32,
}

impl StatusHandler {
    /// `failures_before_warning` of zero means "same as critical". Both counters start at
    /// their thresholds so that the very first result is reported at once, as Consul does;
    /// the thresholds only hold back later transitions.
    pub(crate) fn new(
        success_before_passing: u32,
        failures_before_warning: u32,
        failures_before_critical: u32,
    ) -> StatusHandler {
        let failures_before_warning = if failures_before_warning == 0 {
            failures_before_critical
        } else {
            failures_before_warning
        };
        StatusHandler {
            success_before_passing,
            failures_before_warning,
            failures_before_critical,
            successes: success_before_passing,
            failures: failures_before_critical,
        }
    }

    /// Feeds one raw result; returns what to report, if anything. A warning result counts as a
    /// success (it is the service saying "degraded", not the probe failing).
    pub(crate) fn apply(&mut self, status: Status, output: String) -> Option<(Status, String)> {
        match status {
            Status::Passing | Status::Warning => {
                self.successes = self.successes.saturating_add(1);
                self.failures = 0;
                if self.successes >= self.success_before_passing {
                    return Some((status, output));
                }
                log::debug!(
                    "check passed but has not reached the success threshold ({}/{})",
                    self.successes,
                    self.success_before_passing
                );
                None
            }
            Status::Critical => {
                self.failures = self.failures.saturating_add(1);
                self.successes = 0;
                if self.failures >= self.failures_before_critical {
                    return Some((Status::Critical, output));
                }
                if self.failures >= self.failures_before_warning {
                    return Some((Status::Warning, output));
                }
                log::debug!(
                    "check failed but has not reached the failure thresholds ({}/{}, {})",
                    self.failures,
                    self.failures_before_warning,
                    self.failures_before_critical
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::*;

    fn run(h: &mut StatusHandler, seq: &[Status]) -> Vec<Option<Status>> {
        seq.iter()
            .map(|s| h.apply(*s, String::new()).map(|(s, _)| s))
            .collect()
    }

    #[test]
    fn no_thresholds_reports_everything() {
        let mut h = StatusHandler::new(0, 0, 0);
        assert_eq!(
            run(&mut h, &[Passing, Critical, Warning]),
            vec![Some(Passing), Some(Critical), Some(Warning)]
        );
    }

    #[test]
    fn first_result_is_immediate_then_thresholds_apply() {
        let mut h = StatusHandler::new(2, 0, 3);
        assert_eq!(
            run(
                &mut h,
                &[Passing, Critical, Critical, Critical, Passing, Passing]
            ),
            vec![
                Some(Passing),
                None,
                None,
                Some(Critical),
                None,
                Some(Passing)
            ]
        );
    }

    #[test]
    fn warning_threshold_comes_before_critical() {
        let mut h = StatusHandler::new(0, 1, 3);
        assert_eq!(
            run(&mut h, &[Passing, Critical, Critical, Critical]),
            vec![Some(Passing), Some(Warning), Some(Warning), Some(Critical)]
        );
    }

    #[test]
    fn an_interrupted_streak_starts_over() {
        let mut h = StatusHandler::new(0, 0, 2);
        assert_eq!(
            run(&mut h, &[Passing, Critical, Passing, Critical, Critical]),
            vec![Some(Passing), None, Some(Passing), None, Some(Critical)]
        );
    }
}
