use serde_json::json;

use super::*;

fn tree(src: &str) -> serde_json::Value {
    let v = parse(src).unwrap_or_else(|e| panic!("{src:?} should parse: {e}"));
    serde_json::to_value(&v).expect("a parsed tree is JSON")
}

fn err(src: &str) -> ParseError {
    match parse(src) {
        Ok(v) => panic!("{src:?} should be refused, got {v:?}"),
        Err(e) => e,
    }
}

/// Asserts the error's position and that its message mentions `needle`.
fn err_at(src: &str, line: usize, column: usize, needle: &str) {
    let e = err(src);
    assert_eq!(
        (e.line, e.column),
        (line, column),
        "position of {e} for {src:?}"
    );
    assert!(e.message.contains(needle), "{e} should mention {needle:?}");
    assert!(
        e.to_string().starts_with(&format!("At {line}:{column}: ")),
        "{e}"
    );
}

#[test]
fn block_opened_with_an_attribute_on_its_line() {
    // The case HCL 2 refuses with "invalid block body" and Consul loads.
    let src =
        "acl { enabled = true\n  default_policy = \"deny\"\n  enable_token_persistence = true\n}\n";
    assert_eq!(
        tree(src),
        json!({"acl": {"enabled": true, "default_policy": "deny", "enable_token_persistence": true}})
    );
    // Closing brace on the last attribute's line, and everything on one line.
    assert_eq!(
        tree("ports {\n http = 8500\n dns = 8600 }"),
        json!({"ports": {"http": 8500, "dns": 8600}})
    );
    assert_eq!(
        tree("ports { http = 8500 dns = 8600 }"),
        json!({"ports": {"http": 8500, "dns": 8600}})
    );
    assert_eq!(
        tree("ports { http = 8500, dns = 8600, }"),
        json!({"ports": {"http": 8500, "dns": 8600}})
    );
}

#[test]
fn keys_plain_and_quoted_with_either_form() {
    assert_eq!(
        tree("a = 1\n\"b\" = 2\n\"with space\" = 3\nx-y.z_9 = 4\n\"c\" { d = 5 }\ne = { f = 6 }"),
        json!({"a": 1, "b": 2, "with space": 3, "x-y.z_9": 4, "c": {"d": 5}, "e": {"f": 6}})
    );
    // Unicode identifiers and values.
    assert_eq!(tree("日本 = \"東京\""), json!({"日本": "東京"}));
}

#[test]
fn empty_documents() {
    assert_eq!(tree(""), json!({}));
    assert_eq!(
        tree("  \n# only a comment\n// another\n/* and\n a block */\n"),
        json!({})
    );
    assert_eq!(tree("\u{feff}a = 1"), json!({"a": 1}));
    assert_eq!(
        tree("a {}\nb = {}\nc = []"),
        json!({"a": {}, "b": {}, "c": []})
    );
}

#[test]
fn repeated_blocks_become_lists() {
    let src = r#"
services {
  name = "a"
}
services { name = "b" }
services {
  name = "c"
  checks { ttl = "10s" }
  checks {
    ttl = "20s"
  }
}
"#;
    assert_eq!(
        tree(src),
        json!({"services": [
            {"name": "a"},
            {"name": "b"},
            {"name": "c", "checks": [{"ttl": "10s"}, {"ttl": "20s"}]}
        ]})
    );
    // A block and a list literal under one key accumulate, in order.
    assert_eq!(
        tree("checks { id = \"a\" }\nchecks = [{ id = \"b\" }, { id = \"c\" }]\nchecks { id = \"d\" }"),
        json!({"checks": [{"id": "a"}, {"id": "b"}, {"id": "c"}, {"id": "d"}]})
    );
}

#[test]
fn repeated_scalars_and_lists() {
    // Consul's decoder: a later scalar replaces, a later list appends.
    assert_eq!(
        tree("log_level = \"info\"\nlog_level = \"debug\"\nretry_join = [\"a\"]\nretry_join = [\"b\", \"c\"]"),
        json!({"log_level": "debug", "retry_join": ["a", "b", "c"]})
    );
}

#[test]
fn labelled_blocks_nest() {
    let src = r#"
service "web" {
  policy = "write"
}
service "web-sidecar-proxy" { policy = "write" }
service_prefix "" {
  policy = "read"
}
key_prefix "config/web/" { policy = "read" }
a "b" "c" { d = 1 }
a "b" "e" { d = 2 }
intentions = "read"
"#;
    assert_eq!(
        tree(src),
        json!({
            "service": {"web": {"policy": "write"}, "web-sidecar-proxy": {"policy": "write"}},
            "service_prefix": {"": {"policy": "read"}},
            "key_prefix": {"config/web/": {"policy": "read"}},
            "a": {"b": {"c": {"d": 1}, "e": {"d": 2}}},
            "intentions": "read"
        })
    );
    // The same label twice: its blocks form a list.
    assert_eq!(
        tree("node \"n\" { policy = \"read\" }\nnode \"n\" { policy = \"write\" }"),
        json!({"node": {"n": [{"policy": "read"}, {"policy": "write"}]}})
    );
}

#[test]
fn nested_objects_and_lists() {
    let src = r#"
Kind = "service-router"
Routes = [
  {
    Match {
      HTTP {
        Header = [
          {
            Name  = "x-version"
            Exact = "v2"
          },
        ]
      }
    }
    Destination { Service = "api" },
  },
  { Destination = { ServiceSubset = "canary" } }
]
"#;
    assert_eq!(
        tree(src),
        json!({
            "Kind": "service-router",
            "Routes": [
                {
                    "Match": {"HTTP": {"Header": [{"Name": "x-version", "Exact": "v2"}]}},
                    "Destination": {"Service": "api"}
                },
                {"Destination": {"ServiceSubset": "canary"}}
            ]
        })
    );
    assert_eq!(
        tree("l = [[1, 2], [], [\"x\",],]\nm = [ , 1 ]"),
        json!({"l": [[1, 2], [], ["x"]], "m": [1]})
    );
}

#[test]
fn heredocs() {
    assert_eq!(
        tree("script = <<EOF\n#!/bin/sh\necho \"hi\" \\n ${x}\nEOF\nnext = 1"),
        json!({"script": "#!/bin/sh\necho \"hi\" \\n ${x}\n", "next": 1})
    );
    // `<<-` takes the terminator's indentation off every line.
    assert_eq!(
        tree("a {\n  s = <<-EOT\n    one\n      two\n    EOT\n}"),
        json!({"a": {"s": "one\n  two\n"}})
    );
    // ... unless some line has less of it; then the lines stay as they are.
    assert_eq!(
        tree("s = <<-EOT\n    one\n  two\n    EOT\n"),
        json!({"s": "    one\n  two\n"})
    );
    // A plain heredoc keeps its lines verbatim (HCL 1 also keeps an indented terminator's
    // indentation at the end).
    assert_eq!(tree("s = <<X\n  a\nX\n"), json!({"s": "  a\n"}));
    assert_eq!(tree("s = <<X\na\n  X\n"), json!({"s": "a\n  "}));
    // Empty, CRLF line ends, terminator at the end of the file, inside a list.
    assert_eq!(tree("s = <<E\nE\n"), json!({"s": ""}));
    assert_eq!(tree("s = <<E\r\nx\r\nE\r\n"), json!({"s": "x\r\n"}));
    assert_eq!(tree("s = <<E\nx\nE"), json!({"s": "x\n"}));
    assert_eq!(
        tree("l = [<<A\nfirst\nA\n, \"second\"]"),
        json!({"l": ["first\n", "second"]})
    );
    // A line that merely contains the anchor does not end the heredoc.
    assert_eq!(tree("s = <<END\nEND it\nEND\n"), json!({"s": "END it\n"}));
}

#[test]
fn comments_anywhere() {
    let src = r##"
# hash
// slashes
/* block
   over lines */
a = /* before the value */ 1 # after
b = [
  1, # in a list
  // between items
  2 /* after an item */,
]
c /* between key and brace */ {
  d = "# not a comment // nor this /* nor this */"
}
"##;
    assert_eq!(
        tree(src),
        json!({"a": 1, "b": [1, 2], "c": {"d": "# not a comment // nor this /* nor this */"}})
    );
}

#[test]
fn numbers() {
    // hcl::Number keeps integral floats as integers (the config readers accept both).
    assert_eq!(
        tree("a = 8500\nb = -1\nc = 0x1F\nd = 0755\ne = 1.5\nf = -2.25e2\ng = 1e3\nh = 0\ni = .5\nj = 0.0"),
        json!({"a": 8500, "b": -1, "c": 31, "d": 493, "e": 1.5, "f": -225, "g": 1000, "h": 0, "i": 0.5, "j": 0})
    );
    let v = parse("big = 9223372036854775807").unwrap();
    let Value::Object(m) = v else { panic!() };
    assert_eq!(m["big"].as_i64(), Some(i64::MAX));
}

#[test]
fn strings_and_escapes() {
    assert_eq!(
        tree(r#"s = "tab\tnl\nq\"bs\\ \u00e9 \U0001F600 \x41\101 \a\b\f\r\v""#),
        json!({"s": "tab\tnl\nq\"bs\\ é 😀 AA \u{7}\u{8}\u{c}\r\u{b}"})
    );
    // Interpolations are kept verbatim, quotes and braces included.
    assert_eq!(
        tree(r#"s = "a ${lookup(m, "k", "{}")} b""#),
        json!({"s": "a ${lookup(m, \"k\", \"{}\")} b"})
    );
    // go-sockaddr templates are plain text to the parser.
    assert_eq!(
        tree(
            r#"bind_addr = "{{ GetPrivateInterfaces | include \"network\" \"10.0.0.0/8\" | attr \"address\" }}""#
        ),
        json!({"bind_addr": "{{ GetPrivateInterfaces | include \"network\" \"10.0.0.0/8\" | attr \"address\" }}"})
    );
    assert_eq!(tree("s = \"\""), json!({"s": ""}));
}

#[test]
fn errors_name_line_and_column() {
    err_at("a = \"open\nb = 1", 1, 5, "not terminated");
    err_at("a = 1\nb {\n  c = 2\n", 2, 3, "not closed");
    err_at("a = [1, 2\n", 1, 5, "not closed");
    err_at("a = [1 2]", 1, 8, "expected ',' or ']'");
    err_at("x {\n  y = 1\n}\n  = 2", 4, 3, "expected a key");
    err_at("a b = 1", 1, 5, "only a block takes labels");
    err_at("a = b", 1, 5, "strings must be quoted");
    err_at("a = ", 1, 5, "got end of file");
    err_at("a = }", 1, 5, "expected a value");
    err_at("a\n", 2, 1, "expected '=' or '{' after key \"a\"");
    err_at("a = 1 }", 1, 7, "expected a key");
    err_at("a = \"bad \\q escape\"", 1, 10, "escape");
    err_at("a = \"\\u12\"", 1, 6, "escape");
    err_at("a = \"\\xff\"", 1, 5, "UTF-8");
    err_at("a = <<EOF\nno end\n", 1, 5, "heredoc not terminated");
    err_at("a = <<\nx\n\n", 1, 5, "zero-length heredoc anchor");
    err_at("a = <<EOF junk\nEOF\n", 1, 5, "heredoc anchor");
    err_at("a = <x", 1, 5, "heredoc");
    err_at("a = 1\n/* open", 2, 1, "comment not terminated");
    err_at("a = 1 / 2", 1, 7, "expected '/' for comment");
    err_at("a = 1\nb = @", 2, 5, "illegal character");
    err_at("a = 099", 1, 5, "illegal octal");
    err_at("a = 99999999999999999999", 1, 5, "out of range");
    err_at("a = 0x", 1, 5, "hexadecimal");
    err_at("a = 1e", 1, 5, "exponent");
    err_at("{ a = 1 }", 1, 1, "expected a key");
    err_at("true = 1", 1, 1, "expected a key");
    let deep = format!(
        "a = {}{}",
        "[".repeat(MAX_DEPTH + 1),
        "]".repeat(MAX_DEPTH + 1)
    );
    err_at(&deep, 1, 5 + MAX_DEPTH, "nested deeper");
    let ok = format!("a = {}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
    assert!(parse(&ok).is_ok());
    // Columns count characters, not bytes.
    err_at("é = \"x\" }", 1, 9, "expected a key");
}
