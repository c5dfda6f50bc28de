//! Chat templates rendered as transformers' `apply_chat_template` renders them: Jinja with
//! `trim_blocks` and `lstrip_blocks`, loop controls, Python's string methods (`.strip()`,
//! `.startswith()`, `.split()`, …), `raise_exception`, `strftime_now` and a `tojson` that
//! writes what Python's `json.dumps` writes.

use crate::error::{Error, Result};
use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, ErrorKind};
use serde_json::{Map, Value as Json};

/// What a template sees besides the conversation: transformers passes the tokenizer's special
/// tokens and whatever keyword arguments the caller gives (`enable_thinking`, `date_string`, …).
#[derive(Clone, Debug, Default)]
pub struct ChatContext {
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub add_generation_prompt: bool,
    /// Extra template variables; they shadow the built-in functions of the same name, as
    /// keyword arguments shadow Jinja globals in transformers.
    pub extra: Map<String, Json>,
}

/// Renders `template` for `messages` (any serialisable list of `{role, content, …}`).
pub fn render<M: serde::Serialize>(
    template: &str,
    messages: &[M],
    context: &ChatContext,
) -> Result<String> {
    let bad = |e: minijinja::Error| Error::Usage(format!("chat template: {e}"));
    let env = environment();
    let tmpl = env.template_from_str(template).map_err(bad)?;
    let mut vars = Map::new();
    let messages = serde_json::to_value(messages)
        .map_err(|e| Error::Usage(format!("chat template: messages: {e}")))?;
    vars.insert("messages".into(), messages);
    vars.insert("tools".into(), Json::Null);
    vars.insert("documents".into(), Json::Null);
    vars.insert(
        "add_generation_prompt".into(),
        Json::Bool(context.add_generation_prompt),
    );
    // transformers passes each special token its tokenizer has; a template that names one the
    // tokenizer lacks sees it undefined.
    for (name, token) in [
        ("bos_token", &context.bos_token),
        ("eos_token", &context.eos_token),
    ] {
        if let Some(token) = token {
            vars.insert(name.into(), Json::String(token.clone()));
        }
    }
    for (k, v) in &context.extra {
        vars.insert(k.clone(), v.clone());
    }
    tmpl.render(Value::from_serialize(&vars)).map_err(bad)
}

fn environment<'source>() -> Environment<'source> {
    let mut env = Environment::new();
    // The options transformers compiles every chat template with.
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |msg: String| -> std::result::Result<Value, _> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
        },
    );
    env.add_function("strftime_now", |format: String| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        strftime(&format, now).map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, e))
    });
    env.add_filter("tojson", |value: Value, kwargs: Kwargs| {
        let indent: Option<usize> = kwargs.get("indent")?;
        let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
        kwargs.assert_all_used()?;
        let json = serde_json::to_value(&value)
            .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
        let mut out = String::new();
        python_json(&json, indent, sort_keys.unwrap_or(false), 0, &mut out);
        Ok(Value::from_safe_string(out))
    });
    env
}

/// `json.dumps(value, ensure_ascii=False, indent=indent, sort_keys=sort_keys)` as Python
/// writes it: `", "` and `": "` between items without indent, `","` and newlines with it.
fn python_json(
    value: &Json,
    indent: Option<usize>,
    sort_keys: bool,
    depth: usize,
    out: &mut String,
) {
    let newline = |out: &mut String, depth: usize| {
        if let Some(width) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(width * depth));
        }
    };
    let item_separator = if indent.is_some() { "," } else { ", " };
    match value {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => out.push_str(&i.to_string()),
            (_, Some(u), _) => out.push_str(&u.to_string()),
            (_, _, Some(f)) => out.push_str(&python_float(f)),
            _ => out.push_str(&n.to_string()),
        },
        Json::String(s) => python_string(s, out),
        Json::Array(items) if items.is_empty() => out.push_str("[]"),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_separator);
                }
                newline(out, depth + 1);
                python_json(item, indent, sort_keys, depth + 1, out);
            }
            newline(out, depth);
            out.push(']');
        }
        Json::Object(map) if map.is_empty() => out.push_str("{}"),
        Json::Object(map) => {
            let mut entries: Vec<(&String, &Json)> = map.iter().collect();
            if sort_keys {
                entries.sort_by(|a, b| a.0.cmp(b.0));
            }
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(item_separator);
                }
                newline(out, depth + 1);
                python_string(k, out);
                out.push_str(": ");
                python_json(v, indent, sort_keys, depth + 1, out);
            }
            newline(out, depth);
            out.push('}');
        }
    }
}

/// A JSON string as Python's encoder writes it with `ensure_ascii=False`.
fn python_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Python's `repr` of a float: the shortest digits that round-trip, `1.0` for integral
/// values, exponents signed and at least two digits wide (`1e+16`, `1e-05`).
fn python_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-4..1e16).contains(&abs) {
        // Rust's `{:e}` gives the same shortest digits as Python's repr: "1e16", "1.5e-5".
        let s = format!("{f:e}");
        let (mantissa, exponent) = s.split_once('e').expect("`{:e}` writes an exponent");
        let (sign, digits) = match exponent.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exponent),
        };
        return format!("{mantissa}e{sign}{digits:0>2}");
    }
    let s = format!("{f:?}");
    if s.contains('.') {
        s
    } else {
        format!("{s}.0")
    }
}

/// Python's `time.strftime` for the directives chat templates use, at `unix_seconds` (UTC).
fn strftime(format: &str, unix_seconds: i64) -> std::result::Result<String, String> {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const WEEKDAYS: [&str; 7] = [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ];
    let days = unix_seconds.div_euclid(86_400);
    let secs = unix_seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday (index 3 from Monday).
    let weekday = (days + 3).rem_euclid(7) as usize;
    let day_of_year = days - days_from_civil(year, 1, 1) + 1;
    let (hour, minute, second) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let directive = chars
            .next()
            .ok_or_else(|| format!("strftime_now: {format:?} ends with a lone %"))?;
        let month_name = MONTHS[(month - 1) as usize];
        match directive {
            'd' => out.push_str(&format!("{day:02}")),
            'm' => out.push_str(&format!("{month:02}")),
            'Y' => out.push_str(&year.to_string()),
            'y' => out.push_str(&format!("{:02}", year.rem_euclid(100))),
            'B' => out.push_str(month_name),
            'b' => out.push_str(&month_name[..3]),
            'A' => out.push_str(WEEKDAYS[weekday]),
            'a' => out.push_str(&WEEKDAYS[weekday][..3]),
            'j' => out.push_str(&format!("{day_of_year:03}")),
            'H' => out.push_str(&format!("{hour:02}")),
            'I' => out.push_str(&format!("{:02}", (hour + 11) % 12 + 1)),
            'p' => out.push_str(if hour < 12 { "AM" } else { "PM" }),
            'M' => out.push_str(&format!("{minute:02}")),
            'S' => out.push_str(&format!("{second:02}")),
            '%' => out.push('%'),
            other => return Err(format!("strftime_now: unsupported directive %{other}")),
        }
    }
    Ok(out)
}

/// The proleptic Gregorian date of a day count from 1970-01-01 (Hinnant's civil-from-days).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The day count from 1970-01-01 of a proleptic Gregorian date (the inverse of the above).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msg(role: &str, content: &str) -> Json {
        json!({"role": role, "content": content})
    }

    fn ctx() -> ChatContext {
        ChatContext {
            bos_token: Some("<s>".into()),
            ..Default::default()
        }
    }

    #[test]
    fn python_string_methods_work() {
        let t = "{% for m in messages %}{{ m.content.strip().upper() }}|{{ m.content.startswith(' a') }}|{{ m.content.split('b')[-1].lstrip() }}{% endfor %}";
        let out = render(t, &[msg("user", " abc b d ")], &ctx()).unwrap();
        // Booleans print as Python prints them.
        assert_eq!(out, "ABC B D|True|d ");
    }

    #[test]
    fn blocks_are_trimmed_as_transformers_compiles_templates() {
        // trim_blocks drops the newline after a tag, lstrip_blocks the indentation before one.
        let t = "{% for m in messages %}\n    {% if m.role == 'user' %}\n[{{ m.content }}]\n    {% endif %}\n{% endfor %}";
        let out = render(t, &[msg("user", "x"), msg("assistant", "y")], &ctx()).unwrap();
        assert_eq!(out, "[x]\n");
    }

    #[test]
    fn loop_controls_special_tokens_and_extra_variables() {
        let t = "{{ bos_token }}{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}{{ m.content }}{% endfor %}{% if enable_thinking is defined and enable_thinking is false %}/no{% endif %}{{ eos_token is defined }}";
        let mut c = ctx();
        c.extra.insert("enable_thinking".into(), json!(false));
        let out = render(t, &[msg("user", "a"), msg("user", "b")], &c).unwrap();
        assert_eq!(out, "<s>a/noFalse");
    }

    #[test]
    fn raise_exception_is_an_error_with_the_templates_message() {
        let err = render(
            "{{ raise_exception('only user turns') }}",
            &[msg("user", "a")],
            &ctx(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("only user turns"), "{err}");
    }

    #[test]
    fn tojson_writes_what_json_dumps_writes() {
        let value = json!({"b": [1, 2.5, "é\"\n"], "a": {"x": null, "y": true}, "e": []});
        let mut c = ctx();
        c.extra.insert("v".into(), value);
        // serde_json's map keeps keys sorted, so insertion order is a, b, e here.
        let plain = render("{{ v | tojson }}", &[msg("user", "")], &c).unwrap();
        assert_eq!(
            plain,
            r#"{"a": {"x": null, "y": true}, "b": [1, 2.5, "é\"\n"], "e": []}"#
        );
        let indented = render("{{ v.a | tojson(indent=2) }}", &[msg("user", "")], &c).unwrap();
        assert_eq!(indented, "{\n  \"x\": null,\n  \"y\": true\n}");
        // No HTML escaping: '<' stays '<' in the prompt the model sees.
        c.extra.insert("v".into(), json!("<tool>"));
        assert_eq!(
            render("{{ v | tojson }}", &[msg("user", "")], &c).unwrap(),
            "\"<tool>\""
        );
    }

    #[test]
    fn floats_are_written_as_python_repr_writes_them() {
        for (f, s) in [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (2.5, "2.5"),
            (1e16, "1e+16"),
            (1.5e-5, "1.5e-05"),
            (-3e20, "-3e+20"),
            (0.0001, "0.0001"),
            (123456789.125, "123456789.125"),
        ] {
            assert_eq!(python_float(f), s, "{f}");
        }
    }

    #[test]
    fn strftime_formats_known_dates() {
        // 2024-07-26 00:00:00 UTC, a Friday; 2000-02-29 13:05:09, a Tuesday (day 60 of a leap year).
        assert_eq!(strftime("%d %b %Y", 1_721_952_000).unwrap(), "26 Jul 2024");
        assert_eq!(
            strftime("%A %a %B %y %m %j %H:%M:%S %I%p %%", 951_829_509).unwrap(),
            "Tuesday Tue February 00 02 060 13:05:09 01PM %"
        );
        assert_eq!(strftime("%d", 0).unwrap(), "01");
        assert!(strftime("%Q", 0).is_err());
        for days in [-800_000, -1, 0, 59, 10_957, 19_930, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn strftime_now_is_today() {
        let out = render("{{ strftime_now('%Y') }}", &[msg("user", "")], &ctx()).unwrap();
        let year: i64 = out.parse().unwrap();
        assert!((2024..3000).contains(&year), "{out}");
    }
}
