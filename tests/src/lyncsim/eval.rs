//! lyncsim's interpreter: runs parsed statements against a [`Cms`] with PowerShell's semantics for
//! the subset the agent emits — variables, pipelines that unroll arrays, `@()` that always makes an
//! array, hashtables, calculated properties with `$_`, `[string]` / `[string[]]` casts, member
//! access (with member enumeration over arrays), parameter binding by name, unique prefix and
//! position, and the built-ins `Import-Module`, `Select-Object` and `ConvertTo-Json`. The Lync
//! cmdlets are in [`super::cmdlets`].
//!
//! Errors: with `$ErrorActionPreference='Stop'` the first error ends the script; otherwise it is
//! written to stderr and the script goes on (PowerShell's default), and the exit code is 1 only when
//! the last statement failed — which is why the agent always sets `Stop` first.

use std::collections::HashMap;
use std::rc::Rc;

use super::cmdlets;
use super::parse::{Arg, Element, Expr, Stmt};
use super::store::Cms;

/// A PowerShell value.
#[derive(Debug, Clone)]
pub enum Value {
    /// `$null`.
    Null,
    /// `$true` / `$false`.
    Bool(bool),
    /// A string.
    Str(String),
    /// An array.
    Array(Vec<Value>),
    /// A hashtable or an object's properties, in order.
    Map(Vec<(String, Value)>),
    /// A script block.
    Block(Rc<Vec<Stmt>>),
}

impl Value {
    /// `[string]$v`.
    pub fn to_ps_string(&self) -> String {
        match self {
            Value::Null => String::new(),
            Value::Bool(b) => if *b { "True" } else { "False" }.to_string(),
            Value::Str(s) => s.clone(),
            Value::Array(a) => a
                .iter()
                .map(Value::to_ps_string)
                .collect::<Vec<_>>()
                .join(" "),
            Value::Map(_) => "System.Collections.Hashtable".to_string(),
            Value::Block(_) => "ScriptBlock".to_string(),
        }
    }

    /// A property, ignoring case; member enumeration over arrays.
    pub fn member(&self, name: &str) -> Value {
        match self {
            Value::Map(m) => m
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map_or(Value::Null, |(_, v)| v.clone()),
            Value::Array(a) => {
                let items: Vec<Value> = a
                    .iter()
                    .map(|v| v.member(name))
                    .filter(|v| !matches!(v, Value::Null))
                    .collect();
                match items.len() {
                    0 => Value::Null,
                    1 => items.into_iter().next().unwrap_or(Value::Null),
                    _ => Value::Array(items),
                }
            }
            _ => Value::Null,
        }
    }

    /// As JSON, the way ConvertTo-Json writes these types.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Str(s) => serde_json::Value::String(s.clone()),
            Value::Array(a) => serde_json::Value::Array(a.iter().map(Value::to_json).collect()),
            Value::Map(m) => {
                serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
            Value::Block(_) => serde_json::Value::String(String::new()),
        }
    }
}

/// A runtime error (boxed: errors are rare, results are everywhere).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PsError(pub Box<ErrorRecord>);

/// What PowerShell's ErrorRecord shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorRecord {
    /// The command that failed (empty for expression errors).
    pub command: String,
    /// The message.
    pub message: String,
    /// ErrorCategory name (`ObjectNotFound`, `InvalidArgument`, ...).
    pub category: &'static str,
    /// The target shown in CategoryInfo.
    pub target: String,
    /// The exception type's short name.
    pub exception: &'static str,
    /// FullyQualifiedErrorId.
    pub id: String,
}

impl PsError {
    /// An error of `command`.
    pub fn new(
        command: &str,
        category: &'static str,
        exception: &'static str,
        id: &str,
        target: &str,
        message: String,
    ) -> Self {
        PsError(Box::new(ErrorRecord {
            command: command.to_string(),
            message,
            category,
            target: target.to_string(),
            exception,
            id: id.to_string(),
        }))
    }

    /// The error as Windows PowerShell's normal view prints it.
    pub fn render(&self, line: usize) -> String {
        let r = &self.0;
        let origin = if r.command.is_empty() || r.exception == "CommandNotFoundException" {
            String::new()
        } else {
            r.command.clone()
        };
        format!(
            "{} : {}\nAt line:{line} char:1\n+ {} ...\n+ ~~~~~~~~~~\n    + CategoryInfo          : {}: ({}:String) [{origin}], {}\n    + FullyQualifiedErrorId : {}\n",
            r.command, r.message, r.command, r.category, r.target, r.exception, r.id
        )
    }
}

/// An evaluated argument.
#[derive(Debug, Clone)]
pub enum ArgVal {
    /// `-Name`.
    Param(String),
    /// A value.
    Value(Value),
}

/// Bound parameters.
#[derive(Debug, Default)]
pub struct Params {
    values: Vec<(&'static str, Value)>,
    switches: Vec<&'static str>,
}

impl Params {
    /// A bound value.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Whether a switch was given.
    pub fn has(&self, name: &str) -> bool {
        self.switches.contains(&name)
    }
}

/// A parameter of a command: name and whether it is a switch.
pub type ParamSpec = (&'static str, bool);

fn binding_error(cmd: &str, id: &str, target: &str, message: String) -> PsError {
    PsError::new(
        cmd,
        "InvalidArgument",
        "ParameterBindingException",
        id,
        target,
        message,
    )
}

/// Binds `args` to `spec` (names matched ignoring case, by unique prefix too; bare values fill
/// `positional` in order), as PowerShell's parameter binder does.
pub fn bind(
    cmd: &str,
    args: Vec<ArgVal>,
    spec: &[ParamSpec],
    positional: &[&'static str],
) -> Result<Params, PsError> {
    let mut out = Params::default();
    let mut it = args.into_iter().peekable();
    let mut next_pos = 0;
    let mut seen: Vec<&'static str> = Vec::new();
    while let Some(arg) = it.next() {
        match arg {
            ArgVal::Param(p) => {
                let exact = spec.iter().find(|(n, _)| n.eq_ignore_ascii_case(&p));
                let prefixed: Vec<&ParamSpec> = spec
                    .iter()
                    .filter(|(n, _)| n.to_ascii_lowercase().starts_with(&p.to_ascii_lowercase()))
                    .collect();
                let (name, switch) = match (exact, prefixed.as_slice()) {
                    (Some(s), _) => *s,
                    (None, [s]) => **s,
                    (None, []) => {
                        return Err(binding_error(
                            cmd,
                            &format!("NamedParameterNotFound,{cmd}"),
                            "",
                            format!(
                                "A parameter cannot be found that matches parameter name '{p}'."
                            ),
                        ));
                    }
                    (None, many) => {
                        let names: Vec<String> =
                            many.iter().map(|(n, _)| format!("-{n}")).collect();
                        return Err(binding_error(
                            cmd,
                            &format!("AmbiguousParameter,{cmd}"),
                            "",
                            format!(
                                "Parameter cannot be processed because the parameter name '{p}' is ambiguous. Possible matches include: {}.",
                                names.join(" ")
                            ),
                        ));
                    }
                };
                if seen.contains(&name) {
                    return Err(binding_error(
                        cmd,
                        &format!("ParameterAlreadyBound,{cmd}"),
                        "",
                        format!(
                            "Cannot bind parameter because parameter '{name}' is specified more than once."
                        ),
                    ));
                }
                seen.push(name);
                if switch {
                    out.switches.push(name);
                } else {
                    match it.next() {
                        Some(ArgVal::Value(v)) => out.values.push((name, v)),
                        _ => {
                            return Err(binding_error(
                                cmd,
                                &format!("MissingArgument,{cmd}"),
                                "",
                                format!(
                                    "Missing an argument for parameter '{name}'. Specify a parameter of type 'System.Object' and try again."
                                ),
                            ));
                        }
                    }
                }
            }
            ArgVal::Value(v) => {
                while next_pos < positional.len() && seen.contains(&positional[next_pos]) {
                    next_pos += 1;
                }
                let Some(name) = positional.get(next_pos) else {
                    return Err(binding_error(
                        cmd,
                        &format!("PositionalParameterNotFound,{cmd}"),
                        "",
                        format!(
                            "A positional parameter cannot be found that accepts argument '{}'.",
                            v.to_ps_string()
                        ),
                    ));
                };
                seen.push(name);
                out.values.push((name, v));
                next_pos += 1;
            }
        }
    }
    Ok(out)
}

/// The interpreter's state for one script.
pub struct Shell<'a> {
    /// The store being changed.
    pub cms: &'a mut Cms,
    vars: HashMap<String, Value>,
    module_loaded: bool,
    /// What the script wrote to stdout.
    pub stdout: String,
    /// What the script wrote to stderr.
    pub stderr: String,
}

impl<'a> Shell<'a> {
    /// A fresh shell over `cms`.
    pub fn new(cms: &'a mut Cms) -> Self {
        Shell {
            cms,
            vars: HashMap::new(),
            module_loaded: false,
            stdout: String::new(),
            stderr: String::new(),
        }
    }

    /// Runs a script; returns the process exit code.
    pub fn run(&mut self, stmts: &[Stmt]) -> i32 {
        let mut last_failed = false;
        for stmt in stmts {
            let line = match stmt {
                Stmt::Pipeline(_, line) => *line,
                Stmt::Assign(..) => 1,
            };
            match self.statement(stmt) {
                Ok(values) => {
                    last_failed = false;
                    for v in values {
                        let text = match v {
                            Value::Str(s) => s,
                            other => other.to_json().to_string(),
                        };
                        self.stdout.push_str(&text);
                        self.stdout.push('\n');
                    }
                }
                Err(e) => {
                    self.stderr.push_str(&e.render(line));
                    last_failed = true;
                    if self.stop_on_error() {
                        return 1;
                    }
                }
            }
        }
        i32::from(last_failed)
    }

    fn stop_on_error(&self) -> bool {
        self.vars
            .get("erroractionpreference")
            .is_some_and(|v| v.to_ps_string().eq_ignore_ascii_case("Stop"))
    }

    fn statement(&mut self, stmt: &Stmt) -> Result<Vec<Value>, PsError> {
        match stmt {
            Stmt::Assign(name, e) => {
                let v = self.eval(e)?;
                self.vars.insert(name.to_ascii_lowercase(), v);
                Ok(Vec::new())
            }
            Stmt::Pipeline(els, _) => self.pipeline(els),
        }
    }

    fn statements(&mut self, stmts: &[Stmt]) -> Result<Vec<Value>, PsError> {
        let mut out = Vec::new();
        for s in stmts {
            out.extend(self.statement(s)?);
        }
        Ok(out)
    }

    fn pipeline(&mut self, els: &[Element]) -> Result<Vec<Value>, PsError> {
        let mut input: Vec<Value> = Vec::new();
        for (i, el) in els.iter().enumerate() {
            input = match el {
                Element::Expr(e) => match self.eval(e)? {
                    Value::Array(a) => a,
                    Value::Null => Vec::new(),
                    v => vec![v],
                },
                Element::Command { name, args } => {
                    let mut vals = Vec::with_capacity(args.len());
                    for a in args {
                        vals.push(match a {
                            Arg::Param(p) => ArgVal::Param(p.clone()),
                            Arg::Value(e) => ArgVal::Value(self.eval(e)?),
                        });
                    }
                    self.command(name, vals, input, i > 0)?
                }
            };
        }
        Ok(input)
    }

    fn collect(values: Vec<Value>) -> Value {
        match values.len() {
            0 => Value::Null,
            1 => values.into_iter().next().unwrap_or(Value::Null),
            _ => Value::Array(values),
        }
    }

    fn eval(&mut self, e: &Expr) -> Result<Value, PsError> {
        Ok(match e {
            Expr::Str(s) | Expr::Bare(s) => Value::Str(s.clone()),
            Expr::Var(v) => match v.to_ascii_lowercase().as_str() {
                "null" => Value::Null,
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                name => self.vars.get(name).cloned().unwrap_or(Value::Null),
            },
            Expr::Member(inner, m) => self.eval(inner)?.member(m),
            Expr::Cast(t, inner) => {
                let v = self.eval(inner)?;
                match t.to_ascii_lowercase().as_str() {
                    "string" => Value::Str(v.to_ps_string()),
                    "string[]" => match v {
                        Value::Null => Value::Null,
                        Value::Array(a) => {
                            Value::Array(a.iter().map(|x| Value::Str(x.to_ps_string())).collect())
                        }
                        other => Value::Array(vec![Value::Str(other.to_ps_string())]),
                    },
                    _ => {
                        return Err(PsError::new(
                            "",
                            "InvalidOperation",
                            "RuntimeException",
                            "TypeNotFound",
                            t,
                            format!(
                                "Unable to find type [{t}] (lyncsim knows [string] and [string[]])."
                            ),
                        ));
                    }
                }
            }
            Expr::List(items) => {
                let mut out = Vec::with_capacity(items.len());
                for i in items {
                    out.push(self.eval(i)?);
                }
                Value::Array(out)
            }
            Expr::SubArray(stmts) => Value::Array(self.statements(stmts)?),
            Expr::Table(entries) => {
                let mut map: Vec<(String, Value)> = Vec::new();
                for (k, e) in entries {
                    if map.iter().any(|(x, _)| x.eq_ignore_ascii_case(k)) {
                        return Err(PsError::new(
                            "",
                            "InvalidOperation",
                            "RuntimeException",
                            "DuplicateKeyInHashLiteral",
                            k,
                            format!("Duplicate keys '{k}' are not allowed in hash literals."),
                        ));
                    }
                    let v = self.eval(e)?;
                    map.push((k.clone(), v));
                }
                Value::Map(map)
            }
            Expr::Block(b) => Value::Block(b.clone()),
            Expr::Paren(els) => Self::collect(self.pipeline(els)?),
        })
    }

    /// Runs a script block with `$_` bound to `item`.
    fn call_block(&mut self, block: &Rc<Vec<Stmt>>, item: &Value) -> Result<Value, PsError> {
        let saved = self.vars.insert("_".into(), item.clone());
        let out = self.statements(block);
        match saved {
            Some(v) => self.vars.insert("_".into(), v),
            None => self.vars.remove("_"),
        };
        Ok(Self::collect(out?))
    }

    fn command(
        &mut self,
        name: &str,
        args: Vec<ArgVal>,
        input: Vec<Value>,
        piped: bool,
    ) -> Result<Vec<Value>, PsError> {
        match name.to_ascii_lowercase().as_str() {
            "import-module" => {
                let p = bind(
                    "Import-Module",
                    args,
                    &[("Name", false), ("Force", true)],
                    &["Name"],
                )?;
                let want = p.get("Name").map(Value::to_ps_string).unwrap_or_default();
                let (module, path) = self.cms.product.module();
                if want.eq_ignore_ascii_case(module) || want.eq_ignore_ascii_case(path) {
                    self.module_loaded = true;
                    Ok(Vec::new())
                } else {
                    Err(PsError::new(
                        "Import-Module",
                        "ResourceUnavailable",
                        "FileNotFoundException",
                        "Modules_ModuleNotFound,Microsoft.PowerShell.Commands.ImportModuleCommand",
                        &want,
                        format!(
                            "The specified module '{want}' was not loaded because no valid module file was found in any module directory."
                        ),
                    ))
                }
            }
            "select-object" => {
                let p = bind(
                    "Select-Object",
                    args,
                    &[("Property", false), ("InputObject", false)],
                    &["Property"],
                )?;
                let props = match p.get("Property") {
                    Some(Value::Array(a)) => a.clone(),
                    Some(v) => vec![v.clone()],
                    None => Vec::new(),
                };
                let mut out = Vec::with_capacity(input.len());
                for item in &input {
                    let mut obj = Vec::new();
                    for prop in &props {
                        match prop {
                            Value::Map(m) => {
                                let key = |names: &[&str]| {
                                    m.iter()
                                        .find(|(k, _)| {
                                            names.iter().any(|n| k.eq_ignore_ascii_case(n))
                                        })
                                        .map(|(_, v)| v.clone())
                                };
                                let (Some(n), Some(Value::Block(b))) =
                                    (key(&["n", "name", "l", "label"]), key(&["e", "expression"]))
                                else {
                                    return Err(PsError::new("Select-Object", "InvalidArgument", "NotSupportedException", "DictionaryKeyMissingKey,Microsoft.PowerShell.Commands.SelectObjectCommand", "", "A calculated property needs a Name (n) and an Expression (e) script block.".into()));
                                };
                                let v = self.call_block(&b, item)?;
                                obj.push((n.to_ps_string(), v));
                            }
                            other => {
                                let n = other.to_ps_string();
                                obj.push((n.clone(), item.member(&n)));
                            }
                        }
                    }
                    out.push(Value::Map(obj));
                }
                Ok(out)
            }
            "convertto-json" => {
                let p = bind(
                    "ConvertTo-Json",
                    args,
                    &[("InputObject", false), ("Depth", false), ("Compress", true)],
                    &["InputObject"],
                )?;
                if let Some(d) = p.get("Depth") {
                    let ok = d
                        .to_ps_string()
                        .parse::<u32>()
                        .is_ok_and(|d| (1..=100).contains(&d));
                    if !ok {
                        return Err(binding_error(
                            "ConvertTo-Json",
                            "ParameterArgumentValidationError,Microsoft.PowerShell.Commands.ConvertToJsonCommand",
                            "",
                            format!(
                                "Cannot validate argument on parameter 'Depth'. The argument \"{}\" is not in 1..100.",
                                d.to_ps_string()
                            ),
                        ));
                    }
                }
                let value = match p.get("InputObject") {
                    Some(v) => v.clone(),
                    None if piped && input.len() == 1 => {
                        input.into_iter().next().unwrap_or(Value::Null)
                    }
                    None if piped && input.is_empty() => return Ok(Vec::new()),
                    None => Value::Array(input),
                };
                let json = value.to_json();
                let text = if p.has("Compress") {
                    json.to_string()
                } else {
                    serde_json::to_string_pretty(&json).unwrap_or_default()
                };
                Ok(vec![Value::Str(text)])
            }
            _ if self.module_loaded => match cmdlets::invoke(self.cms, name, args, input) {
                Some(r) => r,
                None => Err(not_found(name)),
            },
            _ => Err(not_found(name)),
        }
    }
}

fn not_found(name: &str) -> PsError {
    PsError::new(
        name,
        "ObjectNotFound",
        "CommandNotFoundException",
        "CommandNotFoundException",
        name,
        format!(
            "The term '{name}' is not recognized as the name of a cmdlet, function, script file, or operable program. Check the spelling of the name, or if a path was included, verify that the path is correct and try again."
        ),
    )
}
