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

use sqlparser::ast::{BinaryOperator, Expr, InTarget, UnaryOperator, Value as SqlValue};

use super::rules::{Condition, coalesce_args, is_coalesce};

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
enum Arith {
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Const(Val<'static>),
    Slot(Slot),
    Not(Box<Node>),
    Neg(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Arith(Arith, Box<Node>, Box<Node>),
    Cmp(Cmp, Box<Node>, Box<Node>),
    Between {
        value: Box<Node>,
        low: Box<Node>,
        high: Box<Node>,
        negated: bool,
    },
    In {
        value: Box<Node>,
        list: Vec<Node>,
        negated: bool,
    },
    IsNull(Box<Node>, bool),
    Coalesce(Vec<Node>),
}

/// A compiled condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    root: Node,
}

impl Program {
    /// Compiles `condition`; `resolve` gives each name's slot. A name it does not know is an
    /// error (conditions were checked at load, so this means a caller resolves differently).
    pub fn compile(
        condition: &Condition,
        resolve: &dyn Fn(&str) -> Option<Slot>,
    ) -> Result<Program, String> {
        Ok(Program {
            root: compile(condition.expr(), resolve)?,
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

fn boxed(expr: &Expr, resolve: &dyn Fn(&str) -> Option<Slot>) -> Result<Box<Node>, String> {
    compile(expr, resolve).map(Box::new)
}

fn compile(expr: &Expr, resolve: &dyn Fn(&str) -> Option<Slot>) -> Result<Node, String> {
    Ok(match expr {
        Expr::Identifier(ident) => {
            let name = ident.value.to_ascii_lowercase();
            Node::Slot(resolve(&name).ok_or_else(|| format!("unknown name {name:?}"))?)
        }
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
        Expr::Nested(inner) => compile(inner, resolve)?,
        Expr::UnaryOp { op, expr } => match op {
            UnaryOperator::Not => Node::Not(boxed(expr, resolve)?),
            UnaryOperator::Minus => Node::Neg(boxed(expr, resolve)?),
            UnaryOperator::Plus => compile(expr, resolve)?,
            other => return Err(format!("{other} is not allowed")),
        },
        Expr::BinaryOp { left, op, right } => {
            let (l, r) = (boxed(left, resolve)?, boxed(right, resolve)?);
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
            value: boxed(expr, resolve)?,
            low: boxed(low, resolve)?,
            high: boxed(high, resolve)?,
            negated: *negated,
        },
        Expr::In {
            expr,
            target: InTarget::List(list),
            negated,
            global: false,
        } => Node::In {
            value: boxed(expr, resolve)?,
            list: list
                .iter()
                .map(|e| compile(e, resolve))
                .collect::<Result<_, _>>()?,
            negated: *negated,
        },
        Expr::IsNull(inner) => Node::IsNull(boxed(inner, resolve)?, false),
        Expr::IsNotNull(inner) => Node::IsNull(boxed(inner, resolve)?, true),
        Expr::Function(function) if is_coalesce(function) => Node::Coalesce(
            coalesce_args(function)?
                .into_iter()
                .map(|e| compile(e, resolve))
                .collect::<Result<_, _>>()?,
        ),
        other => return Err(format!("{other} is not allowed")),
    })
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

fn eval<'v>(node: &Node, vehicle: &'v impl Vehicle) -> Val<'v> {
    match node {
        Node::Const(value) => value.clone(),
        Node::Slot(slot) => vehicle.get(*slot),
        Node::Not(inner) => eval(inner, vehicle).truth().map(|b| !b).into(),
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
            if *negated {
                within.map(|b| !b).into()
            } else {
                within.into()
            }
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
            if *negated {
                found.map(|b| !b).into()
            } else {
                found.into()
            }
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
