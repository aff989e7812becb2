//! Conditions evaluated in the server, one vehicle at a time, with the database's meaning.
//!
//! A checked [`Condition`] compiles once into a [`Program`]: a tree whose names are already
//! resolved to slots (a feature's column, a labelling-time value, a label, an exclusive group),
//! so evaluating it for a vehicle is a walk over plain values, with no parsing, no lookups by
//! name and no allocation for numbers. The meaning is SQL's, as SQLite and PostgreSQL run the
//! same condition compiled by [`Condition::sql`]: NULL is unknown and spreads through
//! arithmetic and comparisons, AND and OR use three-valued logic, a division by zero is NULL,
//! integers divide as integers, and only TRUE selects. A test holds the two to the same answer
//! on thousands of random vehicles.

use std::borrow::Cow;

use sqlparser::ast::{
    BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, InTarget, UnaryOperator,
    Value as SqlValue,
};

use super::rules::Condition;

/// What a name in a condition reads, resolved at compile time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// The feature with this index in [`super::features::FEATURES`].
    Feature(usize),
    /// A labelling-time value: 0 `today`, 1 `current_month`, 2 `current_year`.
    Context(usize),
    /// Whether the vehicle has the label with this index (strategies).
    Label(usize),
    /// The vehicle's label in the exclusive group with this index, as text (strategies).
    Group(usize),
}

/// A value while a condition is evaluated.
#[derive(Debug, Clone, PartialEq)]
pub enum Val<'a> {
    /// Unknown.
    Null,
    /// An integer (SQL keeps integer arithmetic integral).
    Int(i64),
    /// A real number.
    Real(f64),
    /// Text.
    Text(Cow<'a, str>),
    /// A truth value.
    Bool(bool),
}

impl Val<'_> {
    fn number(&self) -> Option<f64> {
        match self {
            Val::Int(i) => Some(*i as f64),
            Val::Real(r) => Some(*r),
            Val::Bool(b) => Some(f64::from(u8::from(*b))),
            Val::Null | Val::Text(_) => None,
        }
    }

    /// SQL truth: TRUE, FALSE or unknown.
    fn truth(&self) -> Option<bool> {
        match self {
            Val::Bool(b) => Some(*b),
            Val::Int(i) => Some(*i != 0),
            Val::Real(r) => Some(*r != 0.0),
            Val::Null | Val::Text(_) => None,
        }
    }
}

impl From<Option<bool>> for Val<'_> {
    fn from(truth: Option<bool>) -> Self {
        truth.map_or(Val::Null, Val::Bool)
    }
}

/// What a program reads for one vehicle.
pub trait Vehicle {
    /// The value in a slot.
    fn get(&self, slot: Slot) -> Val<'_>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arith {
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A condition as a tree; `N` is what a name is: its text as written (`String`, what a
/// [`Condition`] holds), or its resolved [`Slot`] (what a [`Program`] evaluates).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node<N> {
    Const(Val<'static>),
    Name(N),
    Not(Box<Node<N>>),
    Neg(Box<Node<N>>),
    And(Box<Node<N>>, Box<Node<N>>),
    Or(Box<Node<N>>, Box<Node<N>>),
    Arith(Arith, Box<Node<N>>, Box<Node<N>>),
    Cmp(Cmp, Box<Node<N>>, Box<Node<N>>),
    Between {
        value: Box<Node<N>>,
        low: Box<Node<N>>,
        high: Box<Node<N>>,
        negated: bool,
    },
    In {
        value: Box<Node<N>>,
        list: Vec<Node<N>>,
        negated: bool,
    },
    IsNull(Box<Node<N>>, bool),
    Coalesce(Vec<Node<N>>),
}

/// A compiled condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    root: Node<Slot>,
}

impl Program {
    /// Compiles `condition`; `resolve` gives each name's slot. A name it does not know is an
    /// error (conditions were checked at load, so this means a caller resolves differently).
    pub fn compile(
        condition: &Condition,
        resolve: &dyn Fn(&str) -> Option<Slot>,
    ) -> Result<Program, String> {
        Ok(Program {
            root: condition
                .tree()
                .map(&|name| resolve(name).ok_or_else(|| format!("unknown name {name:?}")))?,
        })
    }

    /// The condition's value for `vehicle`.
    pub fn eval<'v>(&self, vehicle: &'v impl Vehicle) -> Val<'v> {
        eval(&self.root, vehicle)
    }

    /// Whether the condition holds: TRUE, not FALSE or unknown (as in a `WHERE`).
    pub fn holds(&self, vehicle: &impl Vehicle) -> bool {
        self.eval(vehicle).truth() == Some(true)
    }
}

/// What conditions may use, for errors.
const ALLOWED: &str = "use comparisons, AND, OR, NOT, arithmetic, BETWEEN, IN, IS NULL or COALESCE";

fn parsed(expr: &Expr) -> Result<Box<Node<String>>, String> {
    Node::parse(expr).map(Box::new)
}

impl Node<String> {
    /// The allowed subset of SQL's expressions as a tree; anything else is an error that says
    /// what is allowed. The one reading of sqlparser's tree: SQL and programs come from this.
    pub(crate) fn parse(expr: &Expr) -> Result<Node<String>, String> {
        Ok(match expr {
            Expr::Identifier(ident) => Node::Name(ident.value.to_ascii_lowercase()),
            Expr::Value(value) => Node::Const(match &value.value {
                SqlValue::Number(n, _) => match n.parse::<i64>() {
                    Ok(i) => Val::Int(i),
                    Err(_) => Val::Real(n.parse().map_err(|_| format!("{n} is not a number"))?),
                },
                SqlValue::SingleQuotedString(s) => Val::Text(Cow::Owned(s.clone())),
                SqlValue::Boolean(b) => Val::Bool(*b),
                SqlValue::Null => Val::Null,
                other => return Err(format!("{other} is not a number or a 'text'")),
            }),
            Expr::Nested(inner) => Node::parse(inner)?,
            Expr::UnaryOp { op, expr } => match op {
                UnaryOperator::Not => Node::Not(parsed(expr)?),
                UnaryOperator::Minus => Node::Neg(parsed(expr)?),
                UnaryOperator::Plus => Node::parse(expr)?,
                other => return Err(format!("{other} is not allowed")),
            },
            Expr::BinaryOp { left, op, right } => {
                let (l, r) = (parsed(left)?, parsed(right)?);
                match op {
                    BinaryOperator::And => Node::And(l, r),
                    BinaryOperator::Or => Node::Or(l, r),
                    BinaryOperator::Plus => Node::Arith(Arith::Add, l, r),
                    BinaryOperator::Minus => Node::Arith(Arith::Sub, l, r),
                    BinaryOperator::Multiply => Node::Arith(Arith::Mul, l, r),
                    BinaryOperator::Divide => Node::Arith(Arith::Div, l, r),
                    BinaryOperator::Eq => Node::Cmp(Cmp::Eq, l, r),
                    BinaryOperator::NotEq => Node::Cmp(Cmp::Ne, l, r),
                    BinaryOperator::Lt => Node::Cmp(Cmp::Lt, l, r),
                    BinaryOperator::LtEq => Node::Cmp(Cmp::Le, l, r),
                    BinaryOperator::Gt => Node::Cmp(Cmp::Gt, l, r),
                    BinaryOperator::GtEq => Node::Cmp(Cmp::Ge, l, r),
                    other => return Err(format!("the operator {other} is not allowed")),
                }
            }
            Expr::Between {
                expr,
                negated,
                low,
                high,
            } => Node::Between {
                value: parsed(expr)?,
                low: parsed(low)?,
                high: parsed(high)?,
                negated: *negated,
            },
            Expr::In {
                expr,
                target: InTarget::List(list),
                negated,
                global: false,
            } => Node::In {
                value: parsed(expr)?,
                list: list.iter().map(Node::parse).collect::<Result<_, _>>()?,
                negated: *negated,
            },
            Expr::IsNull(inner) => Node::IsNull(parsed(inner)?, false),
            Expr::IsNotNull(inner) => Node::IsNull(parsed(inner)?, true),
            Expr::Function(function)
                if function.name.to_string().eq_ignore_ascii_case("coalesce") =>
            {
                let FunctionArguments::List(list) = &function.args else {
                    return Err("COALESCE needs arguments".into());
                };
                let mut args = Vec::new();
                for arg in &list.args {
                    match arg {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => {
                            args.push(Node::parse(e)?)
                        }
                        other => return Err(format!("{other} is not allowed in COALESCE")),
                    }
                }
                Node::Coalesce(args)
            }
            other => return Err(format!("{other} is not allowed; {ALLOWED}")),
        })
    }

    /// Every name, in order of first use, each once.
    pub(crate) fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        self.each_name(&mut |name| {
            if !names.contains(&name) {
                names.push(name);
            }
        });
        names
    }

    fn each_name<'a>(&'a self, f: &mut impl FnMut(&'a str)) {
        match self {
            Node::Const(_) => {}
            Node::Name(name) => f(name),
            Node::Not(x) | Node::Neg(x) | Node::IsNull(x, _) => x.each_name(f),
            Node::And(l, r) | Node::Or(l, r) | Node::Arith(_, l, r) | Node::Cmp(_, l, r) => {
                l.each_name(f);
                r.each_name(f);
            }
            Node::Between {
                value, low, high, ..
            } => {
                value.each_name(f);
                low.each_name(f);
                high.each_name(f);
            }
            Node::In { value, list, .. } => {
                value.each_name(f);
                list.iter().for_each(|item| item.each_name(f));
            }
            Node::Coalesce(args) => args.iter().for_each(|arg| arg.each_name(f)),
        }
    }

    /// The condition as SQL, each name replaced by what `resolve` says. Every operation is
    /// parenthesised, and a division by zero is NULL (unknown), never an error that stops a
    /// relabel.
    pub(crate) fn sql(
        &self,
        resolve: &mut dyn FnMut(&str) -> Result<String, String>,
    ) -> Result<String, String> {
        let mut sql = |node: &Node<String>| node.sql(resolve);
        Ok(match self {
            Node::Const(value) => match value {
                Val::Null => "NULL".into(),
                Val::Int(i) => i.to_string(),
                // Debug keeps a real a real: 2.0, not 2.
                Val::Real(r) => format!("{r:?}"),
                Val::Text(t) => format!("'{}'", t.replace('\'', "''")),
                Val::Bool(true) => "TRUE".into(),
                Val::Bool(false) => "FALSE".into(),
            },
            Node::Name(name) => resolve(name)?,
            Node::Not(x) => format!("(NOT {})", sql(x)?),
            Node::Neg(x) => format!("(-{})", sql(x)?),
            Node::And(l, r) => format!("({} AND {})", sql(l)?, sql(r)?),
            Node::Or(l, r) => format!("({} OR {})", sql(l)?, sql(r)?),
            Node::Arith(Arith::Div, l, r) => format!("({} / NULLIF({}, 0))", sql(l)?, sql(r)?),
            Node::Arith(op, l, r) => {
                let op = match op {
                    Arith::Add => "+",
                    Arith::Sub => "-",
                    Arith::Mul => "*",
                    Arith::Div => "/",
                };
                format!("({} {op} {})", sql(l)?, sql(r)?)
            }
            Node::Cmp(op, l, r) => {
                let op = match op {
                    Cmp::Eq => "=",
                    Cmp::Ne => "<>",
                    Cmp::Lt => "<",
                    Cmp::Le => "<=",
                    Cmp::Gt => ">",
                    Cmp::Ge => ">=",
                };
                format!("({} {op} {})", sql(l)?, sql(r)?)
            }
            Node::Between {
                value,
                low,
                high,
                negated,
            } => format!(
                "({} {}BETWEEN {} AND {})",
                sql(value)?,
                if *negated { "NOT " } else { "" },
                sql(low)?,
                sql(high)?
            ),
            Node::In {
                value,
                list,
                negated,
            } => {
                let items: Vec<String> = list.iter().map(&mut sql).collect::<Result<_, _>>()?;
                format!(
                    "({} {}IN ({}))",
                    sql(value)?,
                    if *negated { "NOT " } else { "" },
                    items.join(", ")
                )
            }
            Node::IsNull(x, false) => format!("({} IS NULL)", sql(x)?),
            Node::IsNull(x, true) => format!("({} IS NOT NULL)", sql(x)?),
            Node::Coalesce(args) => {
                let args: Vec<String> = args.iter().map(&mut sql).collect::<Result<_, _>>()?;
                format!("COALESCE({})", args.join(", "))
            }
        })
    }
}

impl<N> Node<N> {
    /// The same tree with each name mapped by `f`.
    fn map<M>(&self, f: &dyn Fn(&N) -> Result<M, String>) -> Result<Node<M>, String> {
        let boxed = |node: &Node<N>| node.map(f).map(Box::new);
        let all = |nodes: &[Node<N>]| nodes.iter().map(|n| n.map(f)).collect::<Result<_, _>>();
        Ok(match self {
            Node::Const(value) => Node::Const(value.clone()),
            Node::Name(name) => Node::Name(f(name)?),
            Node::Not(x) => Node::Not(boxed(x)?),
            Node::Neg(x) => Node::Neg(boxed(x)?),
            Node::And(l, r) => Node::And(boxed(l)?, boxed(r)?),
            Node::Or(l, r) => Node::Or(boxed(l)?, boxed(r)?),
            Node::Arith(op, l, r) => Node::Arith(*op, boxed(l)?, boxed(r)?),
            Node::Cmp(op, l, r) => Node::Cmp(*op, boxed(l)?, boxed(r)?),
            Node::Between {
                value,
                low,
                high,
                negated,
            } => Node::Between {
                value: boxed(value)?,
                low: boxed(low)?,
                high: boxed(high)?,
                negated: *negated,
            },
            Node::In {
                value,
                list,
                negated,
            } => Node::In {
                value: boxed(value)?,
                list: all(list)?,
                negated: *negated,
            },
            Node::IsNull(x, negated) => Node::IsNull(boxed(x)?, *negated),
            Node::Coalesce(args) => Node::Coalesce(all(args)?),
        })
    }
}

fn arith<'v>(op: Arith, l: Val<'v>, r: Val<'v>) -> Val<'v> {
    if let (Val::Int(a), Val::Int(b)) = (&l, &r) {
        let (a, b) = (*a, *b);
        let exact = match op {
            Arith::Add => a.checked_add(b),
            Arith::Sub => a.checked_sub(b),
            Arith::Mul => a.checked_mul(b),
            // Integer division truncates toward zero in both databases.
            Arith::Div if b == 0 => return Val::Null,
            Arith::Div => a.checked_div(b),
        };
        if let Some(i) = exact {
            return Val::Int(i);
        }
    }
    let (Some(a), Some(b)) = (l.number(), r.number()) else {
        return Val::Null;
    };
    match op {
        Arith::Add => Val::Real(a + b),
        Arith::Sub => Val::Real(a - b),
        Arith::Mul => Val::Real(a * b),
        Arith::Div if b == 0.0 => Val::Null,
        Arith::Div => Val::Real(a / b),
    }
}

fn compare(op: Cmp, l: &Val<'_>, r: &Val<'_>) -> Val<'static> {
    let ordering = match (l, r) {
        (Val::Null, _) | (_, Val::Null) => return Val::Null,
        (Val::Text(a), Val::Text(b)) => a.as_bytes().cmp(b.as_bytes()),
        (Val::Int(a), Val::Int(b)) => a.cmp(b),
        _ => match (l.number(), r.number()) {
            (Some(a), Some(b)) => match a.partial_cmp(&b) {
                Some(ordering) => ordering,
                None => return Val::Null,
            },
            // Text against a number: the rules file compares like with like; unknown.
            _ => return Val::Null,
        },
    };
    use std::cmp::Ordering::{Equal, Greater, Less};
    Val::Bool(match op {
        Cmp::Eq => ordering == Equal,
        Cmp::Ne => ordering != Equal,
        Cmp::Lt => ordering == Less,
        Cmp::Le => ordering != Greater,
        Cmp::Gt => ordering == Greater,
        Cmp::Ge => ordering != Less,
    })
}

fn and(l: Option<bool>, r: Option<bool>) -> Option<bool> {
    match (l, r) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (Some(true), Some(true)) => Some(true),
        _ => None,
    }
}

fn or(l: Option<bool>, r: Option<bool>) -> Option<bool> {
    match (l, r) {
        (Some(true), _) | (_, Some(true)) => Some(true),
        (Some(false), Some(false)) => Some(false),
        _ => None,
    }
}

/// `truth`, or its negation for NOT BETWEEN and NOT IN (unknown stays unknown).
fn unless(negated: bool, truth: Option<bool>) -> Val<'static> {
    truth.map(|b| b != negated).into()
}

fn eval<'v>(node: &Node<Slot>, vehicle: &'v impl Vehicle) -> Val<'v> {
    match node {
        Node::Const(value) => value.clone(),
        Node::Name(slot) => vehicle.get(*slot),
        Node::Not(inner) => unless(true, eval(inner, vehicle).truth()),
        Node::Neg(inner) => match eval(inner, vehicle) {
            Val::Int(i) => i.checked_neg().map_or(Val::Real(-(i as f64)), Val::Int),
            other => other.number().map_or(Val::Null, |n| Val::Real(-n)),
        },
        Node::And(l, r) => and(eval(l, vehicle).truth(), eval(r, vehicle).truth()).into(),
        Node::Or(l, r) => or(eval(l, vehicle).truth(), eval(r, vehicle).truth()).into(),
        Node::Arith(op, l, r) => arith(*op, eval(l, vehicle), eval(r, vehicle)),
        Node::Cmp(op, l, r) => compare(*op, &eval(l, vehicle), &eval(r, vehicle)),
        Node::Between {
            value,
            low,
            high,
            negated,
        } => {
            let value = eval(value, vehicle);
            let within = and(
                compare(Cmp::Ge, &value, &eval(low, vehicle)).truth(),
                compare(Cmp::Le, &value, &eval(high, vehicle)).truth(),
            );
            unless(*negated, within)
        }
        Node::In {
            value,
            list,
            negated,
        } => {
            let value = eval(value, vehicle);
            // TRUE on a match; else unknown if an item was NULL; else FALSE.
            let mut found = Some(false);
            for item in list {
                found = or(
                    found,
                    compare(Cmp::Eq, &value, &eval(item, vehicle)).truth(),
                );
                if found == Some(true) {
                    break;
                }
            }
            unless(*negated, found)
        }
        Node::IsNull(inner, negated) => Val::Bool((eval(inner, vehicle) == Val::Null) != *negated),
        Node::Coalesce(args) => args
            .iter()
            .map(|arg| eval(arg, vehicle))
            .find(|value| *value != Val::Null)
            .unwrap_or(Val::Null),
    }
}

#[cfg(test)]
mod tests;
