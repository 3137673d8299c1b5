use simd_json::json;
use simd_json::OwnedValue;

use super::{Filter, FilterError, MAX_DEPTH};

/// A `/v1/health/service/:name` entry.
fn health_entry() -> OwnedValue {
    json!({
        "Node": {
            "Node": "node-1",
            "Address": "10.0.0.1",
            "Meta": {"rack": "r1"},
            "TaggedAddresses": {"lan": "10.0.0.1", "wan": "1.2.3.4"}
        },
        "Service": {
            "ID": "web-1",
            "Service": "web",
            "Tags": ["production", "v1"],
            "Address": "",
            "Meta": {"version": "1.2.3", "some-key": "x", "empty": ""},
            "Port": 8080,
            "Weights": {"Passing": 1, "Warning": 1},
            "EnableTagOverride": false,
            "Ratio": 0.5
        },
        "Checks": [
            {"CheckID": "serfHealth", "Status": "passing", "ServiceTags": []},
            {"CheckID": "service:web-1", "Status": "critical", "ServiceTags": ["production", "v1"]}
        ]
    })
}

/// A `/v1/catalog/service/:name` entry.
fn catalog_entry() -> OwnedValue {
    json!({
        "Node": "node-1",
        "ServiceName": "web",
        "ServiceTags": ["production"],
        "ServiceMeta": {"version": "1.4.0"},
        "ServicePort": 80,
        "ServiceProxy": {"Upstreams": null},
        "NodeMeta": null
    })
}

#[track_caller]
fn eval(expr: &str, item: &OwnedValue) -> bool {
    match Filter::parse(expr) {
        Ok(f) => match f.matches(item) {
            Ok(b) => b,
            Err(e) => panic!("evaluating {expr:?}: {e}"),
        },
        Err(e) => panic!("parsing {expr:?}: {e}"),
    }
}

#[track_caller]
fn check(expr: &str, expected: bool) {
    assert_eq!(eval(expr, &health_entry()), expected, "{expr}");
}

#[track_caller]
fn parse_err(expr: &str) -> FilterError {
    match Filter::parse(expr) {
        Ok(f) => panic!("{expr:?} parsed: {f:?}"),
        Err(e) => e,
    }
}

#[track_caller]
fn eval_err(expr: &str) -> FilterError {
    let f = Filter::parse(expr).unwrap_or_else(|e| panic!("parsing {expr:?}: {e}"));
    match f.matches(&health_entry()) {
        Ok(b) => panic!("{expr:?} evaluated to {b}"),
        Err(e) => e,
    }
}

// ---- examples from Consul's documentation ----

#[test]
fn consul_doc_examples() {
    check(r#"Service.Meta.version == "1.2.3""#, true);
    check(
        r#""production" in Service.Tags and Checks.Status == passing"#,
        true,
    );
    check(
        r#""staging" in Service.Tags and Checks.Status == passing"#,
        false,
    );
    assert!(eval(
        r#"ServiceMeta.version matches "^1\\.""#,
        &catalog_entry()
    ));
    assert!(!eval(
        r#"ServiceMeta.version matches "^2\\.""#,
        &catalog_entry()
    ));
    check(r#"Service.Meta["some-key"] == x"#, true);
}

// ---- each operator ----

#[test]
fn equality() {
    check("Service.Service == web", true);
    check(r#"Service.Service == "web""#, true);
    check("Service.Service == `web`", true);
    check("Service.Service == Web", false);
    check("Service.Service != web", false);
    check("Service.Service != api", true);
    check(r#"Service.Address == """#, true);
    check("Service.Service==web", true);
}

#[test]
fn numbers_and_booleans_compare_in_the_field_type() {
    check("Service.Port == 8080", true);
    check(r#"Service.Port == "8080""#, true);
    check(r#"Service.Port == "0x1f90""#, true);
    check(r#"Service.Port == "017620""#, true); // Go reads a leading 0 as octal
    check("Service.Port == 8080.0", true);
    check("Service.Port != 80", true);
    check("Service.Weights.Passing == 1", true);
    check("Service.Ratio == 0.5", true);
    check("Service.Ratio == -0.5", false);
    check("Service.EnableTagOverride == false", true);
    check("Service.EnableTagOverride == F", true);
    check("Service.EnableTagOverride == 0", true);
    check("Service.EnableTagOverride != true", true);
    check("Service.EnableTagOverride == true", false);
}

#[test]
fn contains_and_in() {
    // lists: membership
    check("Service.Tags contains v1", true);
    check(r#"Service.Tags contains "v2""#, false);
    check("Service.Tags not contains v2", true);
    check(r#""v1" in Service.Tags"#, true);
    check(r#""v1" not in Service.Tags"#, false);
    check("v1 in Service.Tags", true);
    // strings: substring
    check(r#""eb" in Service.Service"#, true);
    check("Service.Service contains we", true);
    check("Service.Service not contains api", true);
    // maps: keys, not values
    check(r#""version" in Service.Meta"#, true);
    check(r#""1.2.3" in Service.Meta"#, false);
    check(r#"Service.Meta contains "some-key""#, true);
    check(r#""wan" in Node.TaggedAddresses"#, true);
    check(r#""dc2" not in Node.TaggedAddresses"#, true);
}

#[test]
fn emptiness() {
    check("Service.Tags is empty", false);
    check("Service.Tags is not empty", true);
    check("Service.Meta is not empty", true);
    check("Service.Address is empty", true);
    check("Service.Meta.empty is empty", true);
    check("Service.Service is not empty", true);
    let e = json!({"Tags": [], "Meta": {}});
    assert!(eval("Tags is empty", &e));
    assert!(eval("Meta is empty", &e));
    assert!(!eval("Meta is not empty", &e));
}

#[test]
fn regex_matching() {
    check(r#"Service.Service matches "^w.b$""#, true);
    check(r#"Service.Service matches "^api""#, false);
    check(r#"Service.Service not matches "^api""#, true);
    check("Service.ID matches `-\\d$`", true);
    // unanchored, like Go's regexp.Match
    check(r#"Service.Meta.version matches "2\\.""#, true);
    check(r#"Node.Address matches "^10\\.0\\.""#, true);
}

// ---- boolean structure ----

#[test]
fn precedence_not_and_or() {
    // not a and b or c  ==  ((not a) and b) or c
    let t = "Service.Service == web";
    let f = "Service.Service == api";
    let cases = [
        // (a, b, c) -> ((!a && b) || c)
        (t, t, f, false),
        (f, t, f, true),
        (f, f, f, false),
        (t, f, t, true),
        (t, t, t, true),
    ];
    for (a, b, c, want) in cases {
        check(&format!("not {a} and {b} or {c}"), want);
    }
    // and binds tighter than or: a or b and c  ==  a or (b and c)
    check(&format!("{t} or {f} and {f}"), true);
    check(&format!("{f} and {f} or {t}"), true);
    check(&format!("{f} or {t} and {f}"), false);
}

#[test]
fn parentheses_override_precedence() {
    let t = "Service.Service == web";
    let f = "Service.Service == api";
    check(&format!("not ({t} and {f})"), true);
    check(&format!("({t} or {f}) and {f}"), false);
    check(&format!("{t} or ({f} and {f})"), true);
    check(&format!("((({t})))"), true);
    check(&format!("not not {t}"), true);
    check(&format!("not not not {t}"), false);
    check(&format!("(not {t}) or ( {t} )"), true);
    check(&format!("not({f})"), true);
}

#[test]
fn whitespace_is_free() {
    check(
        "\n\t Service.Service   ==\tweb \r\n and\n\"v1\"   in   Service.Tags  ",
        true,
    );
}

// ---- quoting and selectors ----

#[test]
fn quoting_forms() {
    let e = json!({"Meta": {"a b": "x y", "q\"t": "v", "dots.in.key": "d", "tab": "a\tb", "bs": "c:\\dir"}});
    assert!(eval(r#"Meta["a b"] == "x y""#, &e));
    assert!(eval("Meta[`a b`] == `x y`", &e));
    assert!(eval(r#"Meta[ "a b" ] == "x y""#, &e));
    assert!(eval(r#"Meta["q\"t"] == v"#, &e));
    assert!(eval(r#"Meta["dots.in.key"] == d"#, &e));
    assert!(eval(r#"Meta.tab == "a\tb""#, &e));
    assert!(eval(r#"Meta.tab == "a\u0009b""#, &e));
    assert!(eval(r#"Meta.bs == "c:\\dir""#, &e));
    assert!(eval(r"Meta.bs == `c:\dir`", &e));
    // a bare dotted word as a value is its text
    let v = json!({"Version": "v1.2"});
    assert!(eval("Version == v1.2", &v));
}

#[test]
fn field_names_are_case_sensitive() {
    check("service.Service == web", false);
    check("Service.service is empty", true);
}

#[test]
fn keywords_as_words_where_unambiguous() {
    let e = json!({"not": "x", "Tags": ["not", "and"], "Name": "or"});
    assert!(eval("not == x", &e));
    assert!(eval("not in Tags", &e));
    assert!(!eval("not not in Tags", &e));
    assert!(eval("Name == or", &e));
    assert!(eval("Tags contains and", &e));
}

// ---- lists of objects and indexes ----

#[test]
fn selecting_through_a_list_is_any() {
    check("Checks.Status == passing", true);
    check("Checks.Status == critical", true);
    check("Checks.Status == warning", false);
    // per element, then any: some check is not passing
    check("Checks.Status != passing", true);
    check(
        "Checks.CheckID == serfHealth and Checks.Status == critical",
        true,
    );
    check("Checks.ServiceTags contains production", true);
    check("Checks.ServiceTags is empty", true);
    check(r#"Checks.CheckID matches "^service:""#, true);
    let all_passing = json!({"Checks": [{"Status": "passing"}, {"Status": "passing"}]});
    assert!(!eval("Checks.Status != passing", &all_passing));
    assert!(eval("not (Checks.Status != passing)", &all_passing));
    // an empty list satisfies nothing, not even a negation
    let none = json!({"Checks": []});
    assert!(!eval("Checks.Status == passing", &none));
    assert!(!eval("Checks.Status != passing", &none));
    assert!(eval("Checks is empty", &none));
}

#[test]
fn nested_lists_flatten() {
    let e = json!({"A": [{"B": [{"C": 1}, {"C": 2}]}, {"B": [{"C": 3}]}]});
    assert!(eval("A.B.C == 3", &e));
    assert!(!eval("A.B.C == 4", &e));
}

#[test]
fn numeric_parts_index_lists() {
    check("Checks.0.Status == passing", true);
    check("Checks.1.Status == passing", false);
    check("Service.Tags.1 == v1", true);
    check("Checks.7.Status == passing", false);
    check("Checks.7.Status is empty", true);
}

// ---- missing fields and nulls ----

#[test]
fn missing_and_null_are_absent() {
    for sel in [
        "Service.Nope",
        "Nope.Deeper",
        "Service.Port.Deeper",
        "Service.Meta.nope",
    ] {
        check(&format!("{sel} == x"), false);
        check(&format!("{sel} != x"), true);
        check(&format!("{sel} is empty"), true);
        check(&format!("{sel} is not empty"), false);
        check(&format!("{sel} contains x"), false);
        check(&format!("{sel} not contains x"), true);
        check(&format!("x in {sel}"), false);
        check(&format!("x not in {sel}"), true);
        check(&format!("{sel} matches x"), false);
        check(&format!("{sel} not matches x"), true);
    }
    let c = catalog_entry();
    assert!(eval("NodeMeta is empty", &c));
    assert!(eval(r#""rack" not in NodeMeta"#, &c));
    assert!(eval("ServiceProxy.Upstreams is empty", &c));
    assert!(!eval("NodeMeta.rack == r1", &c));
}

#[test]
fn empty_expression_matches_everything() {
    let f = Filter::parse("").unwrap();
    assert!(f.matches(&health_entry()).unwrap());
    assert!(f.matches(&json!(null)).unwrap());
}

#[test]
fn filter_is_reusable_and_cloneable() {
    let f: Filter = r#"Service.Meta.version matches "^1\\.""#.parse().unwrap();
    let g = f.clone();
    assert!(f.matches(&health_entry()).unwrap());
    assert!(g.matches(&health_entry()).unwrap());
    assert!(!g
        .matches(&json!({"Service": {"Meta": {"version": "2.0"}}}))
        .unwrap());
    assert!(format!("{g:?}").contains("Matches"));
}

// ---- errors ----

fn syntax(e: &FilterError) -> (usize, usize, usize, &str) {
    match e {
        FilterError::Syntax {
            line,
            column,
            offset,
            message,
        } => (*line, *column, *offset, message),
        other => panic!("not a syntax error: {other}"),
    }
}

#[test]
fn unbalanced_parentheses() {
    let e = parse_err("(Service.Service == web");
    assert_eq!(
        syntax(&e),
        (1, 1, 0, "unmatched parenthesis: \"(\" is never closed")
    );
    assert_eq!(
        e.to_string(),
        "Failed to create boolean expression evaluator: 1:1 (0): unmatched parenthesis: \"(\" is never closed"
    );

    let e = parse_err("Service.Service == web)");
    assert_eq!(
        syntax(&e),
        (1, 23, 22, "unmatched parenthesis: unexpected \")\"")
    );

    let e = parse_err("(Service.Service == web Service.ID == x)");
    let (_, col, _, msg) = syntax(&e);
    assert_eq!(col, 25);
    assert_eq!(
        msg,
        "unexpected \"Service.ID\", expected \")\", \"and\" or \"or\""
    );

    let e = parse_err("()");
    assert_eq!(
        syntax(&e),
        (1, 2, 1, "unexpected \")\", expected a selector or a value")
    );
}

#[test]
fn unknown_operators() {
    let e = parse_err("Service.Port > 80");
    let (line, col, off, msg) = syntax(&e);
    assert_eq!((line, col, off), (1, 14, 13));
    assert!(
        msg.starts_with("unknown operator \">\", expected one of ==, !="),
        "{msg}"
    );

    let e = parse_err("Service.Port equals 80");
    assert!(
        syntax(&e).3.starts_with("unknown operator \"equals\""),
        "{e}"
    );

    let e = parse_err("Service.Name =~ web");
    assert!(syntax(&e).3.starts_with("unknown operator \"=~\""), "{e}");

    let e = parse_err("Service.Tags not has x");
    assert!(
        syntax(&e).3.starts_with("unknown operator \"not has\""),
        "{e}"
    );

    let e = parse_err("Service.Tags is full");
    assert_eq!(
        syntax(&e),
        (
            1,
            17,
            16,
            "unexpected \"full\", expected \"empty\" or \"not empty\" after \"is\""
        )
    );

    let e = parse_err("Service.Name");
    assert!(
        syntax(&e)
            .3
            .starts_with("unexpected end of input, expected a match operator"),
        "{e}"
    );

    let e = parse_err(r#""v1" contains Service.Tags"#);
    assert_eq!(
        syntax(&e),
        (
            1,
            6,
            5,
            "unexpected \"contains\", expected \"in\" or \"not in\" after a value"
        )
    );
}

#[test]
fn malformed_values_and_selectors() {
    let e = parse_err(r#"Service.Name == "web"#);
    assert_eq!(syntax(&e), (1, 17, 16, "unterminated string literal"));

    let e = parse_err("Service.Name == `web");
    assert_eq!(syntax(&e).3, "unterminated string literal");

    let e = parse_err("Service.Meta[version] == x");
    assert_eq!(
        syntax(&e),
        (
            1,
            13,
            12,
            "invalid index: expected a quoted string after \"[\""
        )
    );

    let e = parse_err(r#"Service.Meta["version" == x"#);
    assert_eq!(syntax(&e).3, "unclosed index expression: expected \"]\"");

    let e = parse_err("Service. == x");
    assert_eq!(
        syntax(&e),
        (
            1,
            8,
            7,
            "invalid selector: expected a name or an index after \".\""
        )
    );

    let e = parse_err("Service.Port == 80x");
    assert_eq!(syntax(&e), (1, 17, 16, "invalid number literal \"80x\""));

    let e = parse_err("Service.Version == 1.2.3");
    assert_eq!(syntax(&e).3, "invalid number literal \"1.2.3\"");

    let e = parse_err(r#"Service.Name == "a\qb""#);
    assert_eq!(
        syntax(&e),
        (1, 19, 18, "invalid escape sequence \"\\\\q\" in string")
    );

    let e = parse_err("Service.Name ==");
    assert_eq!(
        syntax(&e).3,
        "unexpected end of input, expected a value after \"==\""
    );

    let e = parse_err(r#""v1" in "Service.Tags""#);
    assert_eq!(
        syntax(&e).3,
        "unexpected string \"Service.Tags\", expected a selector after \"in\""
    );

    let e = parse_err("Service.Service == web and");
    assert_eq!(
        syntax(&e).3,
        "unexpected end of input, expected a selector or a value"
    );

    let e = parse_err("   ");
    assert_eq!(
        syntax(&e),
        (
            1,
            4,
            3,
            "unexpected end of input, expected a selector or a value"
        )
    );
}

#[test]
fn error_positions_count_lines_and_characters() {
    let e = parse_err("Service.Name == web and\n  Ünïcode == x");
    let (line, col, off, msg) = syntax(&e);
    assert_eq!((line, col), (2, 3));
    assert_eq!(off, "Service.Name == web and\n  ".len());
    assert_eq!(msg, "unexpected \"Ü\", expected a selector or a value");
}

#[test]
fn earlier_parse_error_wins_over_later_lexing_error() {
    let e = parse_err(r#"Service.Name == == "unterminated"#);
    assert_eq!(
        syntax(&e),
        (
            1,
            17,
            16,
            "unexpected \"==\", expected a value after \"==\""
        )
    );
}

#[test]
fn bad_regex() {
    let e = parse_err(r#"Service.Name matches "(web""#);
    match &e {
        FilterError::InvalidRegex {
            selector,
            pattern,
            reason,
        } => {
            assert_eq!(selector, "Service.Name");
            assert_eq!(pattern, "(web");
            assert!(reason.contains("unclosed group"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(e
        .to_string()
        .starts_with("Failed to create boolean expression evaluator: invalid regular expression \"(web\" for selector \"Service.Name\": "));
    assert!(
        matches!(parse_err(r#"Meta["a-b"] not matches "[""#), FilterError::InvalidRegex { selector, .. } if selector == r#"Meta["a-b"]"#)
    );
}

#[test]
fn type_errors_name_the_selector() {
    let e = eval_err("Service.Port == web");
    assert_eq!(
        e,
        FilterError::Coerce {
            selector: "Service.Port".into(),
            value: "web".into(),
            target: "number"
        }
    );
    assert_eq!(
        e.to_string(),
        "Failed to create boolean expression evaluator: failed to coerce value \"web\" for selector \"Service.Port\": not a valid number"
    );
    assert!(matches!(
        eval_err("Service.EnableTagOverride == yes"),
        FilterError::Coerce {
            target: "boolean",
            ..
        }
    ));

    let e = eval_err(r#"Service.Port matches "80""#);
    assert_eq!(
        e.to_string(),
        "Failed to create boolean expression evaluator: invalid match operator \"matches\" for selector \"Service.Port\" (its value is a number)"
    );
    assert!(matches!(
        eval_err("Service.Tags == v1"),
        FilterError::InvalidOperator {
            operator: "==",
            found: "a list",
            ..
        }
    ));
    assert!(matches!(
        eval_err("Service.Meta != x"),
        FilterError::InvalidOperator {
            operator: "!=",
            found: "a map",
            ..
        }
    ));
    assert!(matches!(
        eval_err("Service.Port is empty"),
        FilterError::InvalidOperator { .. }
    ));
    assert!(matches!(
        eval_err("80 in Service.Port"),
        FilterError::InvalidOperator { operator: "in", .. }
    ));
}

#[test]
fn short_circuit_skips_errors_in_unreached_terms() {
    check("Service.Service == web or Service.Port == web", true);
    check("Service.Service == api and Service.Port == web", false);
}

#[test]
fn list_membership_compares_elements_in_their_type() {
    let e = json!({"Ports": [80, 443], "Flags": [true], "Mixed": ["a", 1, null, {"k": 1}]});
    assert!(eval("443 in Ports", &e));
    assert!(eval(r#""0x50" in Ports"#, &e));
    assert!(!eval("8080 in Ports", &e));
    assert!(!eval("web in Ports", &e));
    assert!(eval("T in Flags", &e));
    assert!(eval("1 in Mixed", &e));
    assert!(eval("a in Mixed", &e));
    assert!(!eval("k in Mixed", &e));
}

#[test]
fn nesting_is_bounded() {
    let ok = format!(
        "{}a == b{}",
        "(".repeat(MAX_DEPTH - 1),
        ")".repeat(MAX_DEPTH - 1)
    );
    assert!(Filter::parse(&ok).is_ok());
    let deep = format!("{}a == b{}", "(".repeat(100_000), ")".repeat(100_000));
    let e = parse_err(&deep);
    assert!(
        syntax(&e).3.starts_with("expression nested too deeply"),
        "{e}"
    );
    let nots = format!("{}a == b", "not ".repeat(100_000));
    let e = parse_err(&nots);
    assert!(
        syntax(&e).3.starts_with("expression nested too deeply"),
        "{e}"
    );
    // long flat chains are fine: and/or are n-ary, not nested
    let long = vec!["a == b"; 10_000].join(" or ");
    assert!(!Filter::parse(&long).unwrap().matches(&json!({})).unwrap());
}
