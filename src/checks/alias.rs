//! Alias checks: the health of another service instance or node, folded Consul's way. The
//! integrator owns the checks being aliased, so it calls [`alias_result`] whenever they change
//! and pushes the answer with `Checks::alias_update`.
use super::output::go_quote;
use super::Status;

/// One check of the aliased node or service, as the integrator's state holds it.
#[derive(Debug, Clone, Copy)]
pub struct AliasInput<'a> {
    pub node: &'a str,
    /// Empty for a node-level check.
    pub service_id: &'a str,
    pub check_id: &'a str,
    pub name: &'a str,
    pub status: Status,
    pub output: &'a str,
}

/// Folds `checks` into the alias check's (status, output).
///
/// `alias_node` empty means this agent's node; `alias_service` empty aliases the node's own
/// checks only. `service_exists` says whether the aliased service is registered (consulted
/// only when none of its checks was seen). `own_check_id` is skipped so an alias never
/// mirrors itself.
pub fn alias_result(
    alias_node: &str,
    alias_service: &str,
    own_check_id: &str,
    checks: &[AliasInput<'_>],
    service_exists: bool,
) -> (Status, String) {
    let mut health = Status::Passing;
    let mut msg = "No checks found.".to_string();
    let mut service_found = false;
    for chk in checks {
        if chk.check_id == own_check_id {
            continue;
        }
        if !alias_node.is_empty() && !alias_node.eq_ignore_ascii_case(chk.node) {
            continue;
        }
        let service_match = chk.service_id == alias_service;
        if !chk.service_id.is_empty() && !service_match {
            continue;
        }
        if service_match && !alias_service.is_empty() {
            service_found = true;
        }
        match chk.status {
            Status::Critical | Status::Warning => {
                health = chk.status;
                msg = format!(
                    "Aliased check {} failing: {}",
                    go_quote(chk.name),
                    chk.output
                );
                // A critical check settles it; a warning may still be outranked.
                if chk.status == Status::Critical {
                    break;
                }
            }
            Status::Passing => {
                if health == Status::Passing {
                    msg = "All checks passing.".to_string();
                }
            }
        }
    }
    if !alias_service.is_empty() && !service_found && !service_exists {
        return (
            Status::Critical,
            format!("Service {alias_service} could not be found on node {alias_node}"),
        );
    }
    (health, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chk<'a>(service_id: &'a str, name: &'a str, status: Status) -> AliasInput<'a> {
        AliasInput {
            node: "n1",
            service_id,
            check_id: name,
            name,
            status,
            output: "out",
        }
    }

    #[test]
    fn folds_like_consul() {
        let checks = [
            chk("web", "a", Status::Passing),
            chk("web", "b", Status::Warning),
            chk("db", "c", Status::Critical),
            chk("", "node", Status::Passing),
        ];
        assert_eq!(
            alias_result("", "web", "self", &checks, true),
            (
                Status::Warning,
                "Aliased check \"b\" failing: out".to_string()
            )
        );
        assert_eq!(
            alias_result("", "db", "self", &checks, true).0,
            Status::Critical
        );
        assert_eq!(
            alias_result("", "", "self", &checks[3..], true),
            (Status::Passing, "All checks passing.".to_string())
        );
        assert_eq!(
            alias_result("", "", "self", &[], true),
            (Status::Passing, "No checks found.".to_string())
        );
        assert_eq!(
            alias_result("n1", "gone", "self", &checks, false),
            (
                Status::Critical,
                "Service gone could not be found on node n1".to_string()
            )
        );
    }
}
