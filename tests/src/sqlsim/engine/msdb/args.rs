//! Binding a call's arguments to a system procedure's parameters, the way SQL Server does it:
//! positional arguments first, in declaration order, then `@name = value` ones; an unknown name is
//! 8145, too many positional arguments 8144, a required parameter left out 201. OUTPUT values
//! go back to the argument that supplied the parameter, and only if it was passed as OUTPUT.

use std::collections::HashMap;

use crate::sqlsim::engine::{OutputValue, ProcArg};
use crate::sqlsim::tokens::ServerMessage;
use crate::sqlsim::types::{SqlType, Value, parse_guid};

/// A call bound to a procedure's parameter list.
pub struct Bound<'a> {
    procedure: &'static str,
    args: &'a [ProcArg],
    /// Lower-cased parameter name → argument index.
    by_param: HashMap<&'static str, usize>,
    /// OUTPUT values to send back.
    pub outputs: Vec<OutputValue>,
}

impl<'a> Bound<'a> {
    /// Binds `args` to `params` (names with `@`, lower case, in declaration order).
    pub fn bind(
        procedure: &'static str,
        params: &[&'static str],
        args: &'a [ProcArg],
    ) -> Result<Self, ServerMessage> {
        let mut by_param = HashMap::new();
        let mut positional = 0;
        for (i, a) in args.iter().enumerate() {
            match &a.name {
                Some(n) => {
                    let lower = n.to_lowercase();
                    let p = params.iter().find(|p| **p == lower).ok_or_else(|| {
                        ServerMessage::new(
                            8145,
                            2,
                            16,
                            format!("{n} is not a parameter for procedure {procedure}."),
                        )
                    })?;
                    by_param.insert(*p, i);
                }
                None => {
                    let p = params.get(positional).ok_or_else(|| {
                        ServerMessage::new(
                            8144,
                            2,
                            16,
                            format!("Procedure or function {procedure} has too many arguments specified."),
                        )
                    })?;
                    by_param.insert(*p, i);
                    positional += 1;
                }
            }
        }
        Ok(Bound {
            procedure,
            args,
            by_param,
            outputs: Vec::new(),
        })
    }

    /// The value given for a parameter (NULL when not given).
    pub fn value(&self, param: &str) -> Value {
        self.by_param
            .get(param)
            .and_then(|i| self.args.get(*i))
            .map_or(Value::Null, |a| a.value.clone())
    }

    /// The parameter as text (trimmed; empty is NULL, as the msdb procedures treat it).
    pub fn text(&self, param: &str) -> Option<String> {
        self.value(param)
            .to_text()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
    }

    /// The parameter as an integer.
    pub fn int(&self, param: &str) -> Option<i64> {
        self.value(param).as_i64()
    }

    /// The parameter as an int with a default.
    pub fn int_or(&self, param: &str, default: i64) -> i64 {
        self.int(param).unwrap_or(default)
    }

    /// The parameter as a GUID in upper-case text (a uniqueidentifier or its text form).
    pub fn guid(&self, param: &str) -> Option<String> {
        let t = self.text(param)?;
        parse_guid(&t).map(|g| Value::Guid(g).to_text().unwrap_or_default())
    }

    /// A required text parameter, or 201.
    pub fn require(&self, param: &str) -> Result<String, ServerMessage> {
        self.text(param).ok_or_else(|| {
            ServerMessage::new(
                201,
                4,
                16,
                format!(
                    "Procedure or function '{}' expects parameter '{param}', which was not supplied.",
                    self.procedure
                ),
            )
        })
    }

    /// Sets an OUTPUT parameter, if the caller passed it as OUTPUT.
    pub fn set_output(&mut self, param: &str, value: Value, ty: SqlType) {
        if let Some(i) = self.by_param.get(param)
            && self.args.get(*i).is_some_and(|a| a.output)
        {
            self.outputs.push(OutputValue { arg: *i, value, ty });
        }
    }

    /// Sets a uniqueidentifier OUTPUT parameter from GUID text.
    pub fn set_guid_output(&mut self, param: &str, guid: &str) {
        let v = parse_guid(guid).map_or(Value::Null, Value::Guid);
        self.set_output(param, v, SqlType::UniqueIdentifier);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arg(name: Option<&str>, v: Value, output: bool) -> ProcArg {
        ProcArg {
            name: name.map(str::to_string),
            value: v,
            output,
        }
    }

    #[test]
    fn positional_then_named_and_outputs() {
        let args = vec![
            arg(None, Value::Str("j".into()), false),
            arg(Some("@Job_ID"), Value::Null, true),
        ];
        let mut b = Bound::bind("sp_x", &["@job_name", "@enabled", "@job_id"], &args).unwrap();
        assert_eq!(b.text("@job_name").as_deref(), Some("j"));
        assert!(b.value("@enabled").is_null());
        b.set_guid_output("@job_id", "6F9619FF-8B86-D011-B42D-00C04FC964FF");
        b.set_output("@enabled", Value::Int(1), SqlType::Int);
        assert_eq!(b.outputs.len(), 1);
        assert_eq!(b.outputs[0].arg, 1);
        let err = Bound::bind("sp_x", &["@a"], &[arg(Some("@b"), Value::Null, false)])
            .err()
            .unwrap();
        assert_eq!(err.number, 8145);
        assert_eq!(b.require("@enabled").unwrap_err().number, 201);
    }
}
