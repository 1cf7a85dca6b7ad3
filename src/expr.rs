//! Check expressions: `LHS CMP RHS` over statistics of the runs of one phase.
//!
//! Grammar (whitespace is free):
//!
//! ```text
//! condition := sum CMP sum                      CMP: >= > <= < == !=
//! sum       := product (("+" | "-") product)*
//! product   := unary (("*" | "/") unary)*
//! unary     := "-" unary | atom
//! atom      := NUMBER | "(" sum ")" | reference
//! reference := WORKLOAD selector? "." MODE "." [QUANTITY "."] STAT
//! selector  := "[" NAME "=" LITERAL ("," NAME "=" LITERAL)* "]"
//! ```
//!
//! `MODE` is `cold` or `warm`; `QUANTITY` is `time` (the default, in seconds) or a
//! metric the workload's kernel declares; `STAT` is one of [`Stat`]. A condition whose
//! left side is a quotient of two references to the same mode and statistic, and whose
//! right side has no references, is a *paired ratio* when the two runs are interleaved
//! partners: it is evaluated on the per-pair ratios (see `verdict`).

use std::fmt;
use std::ops::Range;

use crate::kernel::Value;
use crate::spec::Mode;

/// A statistic of a run's samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stat {
    Mean,
    Median,
    Min,
    Max,
    Stddev,
    Mad,
}

impl Stat {
    pub const ALL: [(&'static str, Stat); 6] = [
        ("mean", Stat::Mean),
        ("median", Stat::Median),
        ("min", Stat::Min),
        ("max", Stat::Max),
        ("stddev", Stat::Stddev),
        ("mad", Stat::Mad),
    ];

    pub fn name(self) -> &'static str {
        Stat::ALL.iter().find(|(_, stat)| *stat == self).map_or("?", |(name, _)| name)
    }

    fn parse(text: &str) -> Option<Stat> {
        Stat::ALL.iter().find(|(name, _)| *name == text).map(|(_, stat)| *stat)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Ge,
    Gt,
    Le,
    Lt,
    Eq,
    Ne,
}

impl Cmp {
    pub fn symbol(self) -> &'static str {
        match self {
            Cmp::Ge => ">=",
            Cmp::Gt => ">",
            Cmp::Le => "<=",
            Cmp::Lt => "<",
            Cmp::Eq => "==",
            Cmp::Ne => "!=",
        }
    }

    /// The comparison with its sides swapped: `a >= b` is `b <= a`.
    pub fn mirrored(self) -> Cmp {
        match self {
            Cmp::Ge => Cmp::Le,
            Cmp::Gt => Cmp::Lt,
            Cmp::Le => Cmp::Ge,
            Cmp::Lt => Cmp::Gt,
            Cmp::Eq => Cmp::Eq,
            Cmp::Ne => Cmp::Ne,
        }
    }

    pub fn holds(self, left: f64, right: f64) -> bool {
        match self {
            Cmp::Ge => left >= right,
            Cmp::Gt => left > right,
            Cmp::Le => left <= right,
            Cmp::Lt => left < right,
            Cmp::Eq => left == right,
            Cmp::Ne => left != right,
        }
    }
}

/// A reference to one statistic of one workload's runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Reference {
    pub workload: String,
    pub selectors: Vec<(String, Value)>,
    pub mode: Mode,
    /// `time` or a metric name.
    pub quantity: String,
    pub stat: Stat,
    /// Byte range of the reference in the expression text.
    pub span: Range<usize>,
}

impl Reference {
    pub fn is_time(&self) -> bool {
        self.quantity == "time"
    }

    /// The runs this reference selects.
    pub fn selected(&self) -> Selected {
        Selected { workload: self.workload.clone(), selectors: self.selectors.clone() }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_selected(f, &self.workload, &self.selectors)?;
        write!(f, ".{}.{}.{}", self.mode.name(), self.quantity, self.stat.name())
    }
}

/// The runs of one workload that a parity or snapshot check names: `fast`, or
/// `fast[variant="simd"]` for those with the selected parameter values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Selected {
    pub workload: String,
    pub selectors: Vec<(String, Value)>,
}

impl Selected {
    /// Whether `other` is written to select the same runs: the same workload and
    /// selectors, their values compared as runs are named (`size=1` and `size=1.0`
    /// alike, [`Value::same_point`]).
    pub fn same_runs(&self, other: &Selected) -> bool {
        self.workload == other.workload
            && self.selectors.len() == other.selectors.len()
            && self
                .selectors
                .iter()
                .zip(&other.selectors)
                .all(|((name, value), (other_name, other_value))| name == other_name && value.same_point(other_value))
    }
}

impl fmt::Display for Selected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_selected(f, &self.workload, &self.selectors)
    }
}

/// `workload[name=value,...]`, as a reference is written.
fn write_selected(f: &mut fmt::Formatter<'_>, workload: &str, selectors: &[(String, Value)]) -> fmt::Result {
    f.write_str(workload)?;
    if !selectors.is_empty() {
        let parts: Vec<String> = selectors.iter().map(|(name, value)| format!("{name}={value}")).collect();
        write!(f, "[{}]", parts.join(","))?;
    }
    Ok(())
}

#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    Number(f64),
    Ref(Reference),
    Neg(Box<Node>),
    Binary(char, Box<Node>, Box<Node>),
}

impl Node {
    /// Every reference in the expression, left to right.
    pub fn references(&self) -> Vec<&Reference> {
        let mut found = Vec::new();
        self.collect(&mut found);
        found
    }

    fn collect<'a>(&'a self, found: &mut Vec<&'a Reference>) {
        match self {
            Node::Number(_) => {}
            Node::Ref(reference) => found.push(reference),
            Node::Neg(inner) => inner.collect(found),
            Node::Binary(_, left, right) => {
                left.collect(found);
                right.collect(found);
            }
        }
    }

    /// Evaluates with `lookup` giving each reference's value; `None` when any value is
    /// missing.
    pub fn eval(&self, lookup: &mut dyn FnMut(&Reference) -> Option<f64>) -> Option<f64> {
        Some(match self {
            Node::Number(value) => *value,
            Node::Ref(reference) => lookup(reference)?,
            Node::Neg(inner) => -inner.eval(lookup)?,
            Node::Binary(op, left, right) => {
                let (left, right) = (left.eval(lookup)?, right.eval(lookup)?);
                match op {
                    '+' => left + right,
                    '-' => left - right,
                    '*' => left * right,
                    _ => left / right,
                }
            }
        })
    }

    /// The positions (in [`Node::references`] order) of the numerator of every
    /// sub-expression `A / B` of two references with the same mode and statistic: the
    /// ratios that may be formed per pair of samples when A and B were taken together.
    /// The denominator is the next position.
    pub fn reference_ratios(&self) -> Vec<usize> {
        let mut found = Vec::new();
        self.find_ratios(&mut 0, &mut found);
        found
    }

    /// `(A, B)` when this node is `A / B` of two references with the same mode and
    /// statistic.
    fn reference_ratio(&self) -> Option<(&Reference, &Reference)> {
        let Node::Binary('/', left, right) = self else { return None };
        let (Node::Ref(numerator), Node::Ref(denominator)) = (left.as_ref(), right.as_ref()) else { return None };
        (numerator.mode == denominator.mode && numerator.stat == denominator.stat).then_some((numerator, denominator))
    }

    fn find_ratios(&self, position: &mut usize, found: &mut Vec<usize>) {
        match self {
            Node::Number(_) => {}
            Node::Ref(_) => *position += 1,
            Node::Neg(inner) => inner.find_ratios(position, found),
            Node::Binary(..) if self.reference_ratio().is_some() => {
                found.push(*position);
                *position += 2;
            }
            Node::Binary(_, left, right) => {
                left.find_ratios(position, found);
                right.find_ratios(position, found);
            }
        }
    }

    /// The expression with each ratio whose numerator sits at one of `numerators` (see
    /// [`Node::reference_ratios`]) folded into one term, its numerator's reference:
    /// evaluated with values given in order, each such ratio takes one value.
    pub fn fold_ratios(&self, numerators: &[usize]) -> Node {
        self.fold(numerators, &mut 0)
    }

    fn fold(&self, numerators: &[usize], position: &mut usize) -> Node {
        match self {
            Node::Number(value) => Node::Number(*value),
            Node::Ref(reference) => {
                *position += 1;
                Node::Ref(reference.clone())
            }
            Node::Neg(inner) => Node::Neg(Box::new(inner.fold(numerators, position))),
            Node::Binary('/', left, right)
                if numerators.contains(position)
                    && matches!((left.as_ref(), right.as_ref()), (Node::Ref(_), Node::Ref(_))) =>
            {
                *position += 2;
                left.as_ref().clone()
            }
            Node::Binary(op, left, right) => {
                let left = left.fold(numerators, position);
                Node::Binary(*op, Box::new(left), Box::new(right.fold(numerators, position)))
            }
        }
    }

    /// The range of the expression when every reference lies in the interval `lookup`
    /// gives it (interval arithmetic; a divisor whose interval holds 0 makes the range
    /// unbounded).
    pub fn eval_interval(&self, lookup: &mut dyn FnMut(&Reference) -> Option<(f64, f64)>) -> Option<(f64, f64)> {
        Some(match self {
            Node::Number(value) => (*value, *value),
            Node::Ref(reference) => lookup(reference)?,
            Node::Neg(inner) => {
                let (low, high) = inner.eval_interval(lookup)?;
                (-high, -low)
            }
            Node::Binary(op, left, right) => {
                let ((a, b), (c, d)) = (left.eval_interval(lookup)?, right.eval_interval(lookup)?);
                // A bound of 0 times an infinite one is 0, as interval arithmetic takes it
                // ([0, 1] * [1, inf] is [0, inf]).
                let times = |x: f64, y: f64| if x == 0.0 || y == 0.0 { 0.0 } else { x * y };
                match op {
                    '+' => hull(&[a + c, b + d]),
                    '-' => hull(&[a - d, b - c]),
                    '*' => hull(&[times(a, c), times(a, d), times(b, c), times(b, d)]),
                    _ if c <= 0.0 && d >= 0.0 => UNBOUNDED,
                    _ => hull(&[a / c, a / d, b / c, b / d]),
                }
            }
        })
    }
}

/// A parsed check condition.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    pub text: String,
    pub left: Node,
    pub cmp: Cmp,
    pub right: Node,
}

impl Condition {
    pub fn references(&self) -> Vec<&Reference> {
        let mut found = self.left.references();
        found.extend(self.right.references());
        found
    }

    /// `(numerator, denominator)` when the condition is a candidate paired ratio: the
    /// left side is `A / B` with equal mode and statistic and the right side is
    /// constant. Whether A and B really are interleaved partners is decided by the plan.
    pub fn ratio(&self) -> Option<(&Reference, &Reference)> {
        if !self.right.references().is_empty() {
            return None;
        }
        self.left.reference_ratio()
    }
}

/// The interval that says nothing: every number lies in it.
const UNBOUNDED: (f64, f64) = (f64::NEG_INFINITY, f64::INFINITY);

/// The smallest interval holding `values`. A NaN among them comes of a bound whose
/// value is undetermined (inf - inf, inf / inf): the range is then unbounded.
fn hull(values: &[f64]) -> (f64, f64) {
    if values.iter().any(|value| value.is_nan()) {
        return UNBOUNDED;
    }
    (values.iter().copied().fold(f64::INFINITY, f64::min), values.iter().copied().fold(f64::NEG_INFINITY, f64::max))
}

/// A parse error with its byte range in the expression.
#[derive(Clone, Debug, PartialEq)]
pub struct ExprError {
    pub message: String,
    pub span: Range<usize>,
}

pub fn parse(text: &str) -> Result<Condition, ExprError> {
    let tokens = tokenize(text)?;
    let mut parser = Parser { tokens, position: 0, end: text.len() };
    let left = parser.sum()?;
    let left_span = parser.span_of(0..parser.position);
    let cmp = match parser.next() {
        Some((Token::Cmp(cmp), _)) => cmp,
        Some((token, span)) => {
            return Err(ExprError { message: format!("expected a comparison (>=, <=, ...), found {token}"), span });
        }
        None => {
            return Err(ExprError {
                message: "expected a comparison such as `>= 4` at the end".into(),
                span: text.len()..text.len(),
            });
        }
    };
    let right_start = parser.position;
    let right = parser.sum()?;
    let right_span = parser.span_of(right_start..parser.position);
    if let Some((token, span)) = parser.next() {
        return Err(ExprError { message: format!("unexpected {token} after the condition"), span });
    }
    // A constant threshold is known now: one that is not a finite number (`1/0`, `0/0`)
    // would decide every check against it alike (nothing exceeds infinity, NaN equals
    // nothing), so it is refused rather than measured against.
    for (constant, other, span) in [(&left, &right, left_span), (&right, &left, right_span)] {
        if constant.references().is_empty()
            && !other.references().is_empty()
            && let Some(value) = constant.eval(&mut |_| None)
            && !value.is_finite()
        {
            return Err(ExprError {
                message: format!("the threshold `{}` is not a finite number ({value})", &text[span.clone()]),
                span,
            });
        }
    }
    // A constant on the left reads as the mirrored comparison (`4 <= A / B` is
    // `A / B >= 4`), so the paired-ratio and median forms are recognised either way.
    if left.references().is_empty() && !right.references().is_empty() {
        return Ok(Condition { text: text.to_owned(), left: right, cmp: cmp.mirrored(), right: left });
    }
    Ok(Condition { text: text.to_owned(), left, cmp, right })
}

/// Parses the workload of a parity or snapshot check: `fast` or `fast[size=1024]`.
pub fn parse_selected(text: &str) -> Result<Selected, ExprError> {
    let tokens = tokenize(text)?;
    let mut parser = Parser { tokens, position: 0, end: text.len() };
    let workload = match parser.next() {
        Some((Token::Ident(workload), _)) => workload,
        Some((token, span)) => {
            return Err(ExprError { message: format!("expected a workload id, found {token}"), span });
        }
        None => return Err(ExprError { message: "expected a workload id".into(), span: 0..0 }),
    };
    let selectors = parser.selectors(0)?;
    if let Some((token, span)) = parser.next() {
        return Err(ExprError {
            message: format!("unexpected {token}: write a workload id with optional selectors, e.g. `fast[size=1024]`"),
            span,
        });
    }
    Ok(Selected { workload, selectors })
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    /// The value, and whether it was written as an integer.
    Number(f64, bool),
    Ident(String),
    Text(String),
    Symbol(char),
    Cmp(Cmp),
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Number(value, _) => write!(f, "number `{value}`"),
            Token::Ident(name) => write!(f, "`{name}`"),
            Token::Text(text) => write!(f, "string \"{text}\""),
            Token::Symbol(symbol) => write!(f, "`{symbol}`"),
            Token::Cmp(cmp) => write!(f, "`{}`", cmp.symbol()),
        }
    }
}

fn tokenize(text: &str) -> Result<Vec<(Token, Range<usize>)>, ExprError> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut index = 0;
    while index < bytes.len() {
        let start = index;
        let byte = bytes[index];
        match byte {
            b' ' | b'\t' | b'\n' | b'\r' => index += 1,
            b'0'..=b'9' => {
                while index < bytes.len()
                    && (bytes[index].is_ascii_digit() || bytes[index] == b'.' || bytes[index] == b'_')
                {
                    index += 1;
                }
                if index < bytes.len() && (bytes[index] == b'e' || bytes[index] == b'E') {
                    index += 1;
                    if index < bytes.len() && (bytes[index] == b'-' || bytes[index] == b'+') {
                        index += 1;
                    }
                    while index < bytes.len() && bytes[index].is_ascii_digit() {
                        index += 1;
                    }
                }
                let literal = text[start..index].replace('_', "");
                let value = literal
                    .parse::<f64>()
                    .map_err(|_| ExprError { message: format!("invalid number `{literal}`"), span: start..index })?;
                if !value.is_finite() {
                    return Err(ExprError {
                        message: format!("number `{literal}` is too large for a 64-bit float"),
                        span: start..index,
                    });
                }
                let integer = !literal.contains(['.', 'e', 'E']);
                tokens.push((Token::Number(value, integer), start..index));
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                while index < bytes.len() && (bytes[index].is_ascii_alphanumeric() || bytes[index] == b'_') {
                    index += 1;
                }
                tokens.push((Token::Ident(text[start..index].to_owned()), start..index));
            }
            b'"' | b'\'' => {
                let close = text[index + 1..]
                    .find(byte as char)
                    .ok_or(ExprError { message: "unterminated string".into(), span: start..text.len() })?;
                index += close + 2;
                tokens.push((Token::Text(text[start + 1..index - 1].to_owned()), start..index));
            }
            b'>' | b'<' | b'=' | b'!' => {
                let two = text.get(index..index + 2).unwrap_or("");
                let (cmp, width) = match (byte, two) {
                    (_, ">=") => (Some(Cmp::Ge), 2),
                    (_, "<=") => (Some(Cmp::Le), 2),
                    (_, "==") => (Some(Cmp::Eq), 2),
                    (_, "!=") => (Some(Cmp::Ne), 2),
                    (b'>', _) => (Some(Cmp::Gt), 1),
                    (b'<', _) => (Some(Cmp::Lt), 1),
                    (b'=', _) => (None, 1),
                    _ => {
                        return Err(ExprError { message: "unexpected `!`".into(), span: start..start + 1 });
                    }
                };
                index += width;
                match cmp {
                    Some(cmp) => tokens.push((Token::Cmp(cmp), start..index)),
                    None => tokens.push((Token::Symbol('='), start..index)),
                }
            }
            b'+' | b'-' | b'*' | b'/' | b'(' | b')' | b'[' | b']' | b'.' | b',' => {
                index += 1;
                tokens.push((Token::Symbol(byte as char), start..index));
            }
            _ => {
                let character = text[index..].chars().next().unwrap_or('?');
                return Err(ExprError {
                    message: format!("unexpected character `{character}`"),
                    span: start..start + character.len_utf8(),
                });
            }
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<(Token, Range<usize>)>,
    position: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.position).map(|(token, _)| token)
    }

    fn next(&mut self) -> Option<(Token, Range<usize>)> {
        let token = self.tokens.get(self.position).cloned();
        self.position += 1;
        token
    }

    /// The text the tokens at `positions` cover.
    fn span_of(&self, positions: Range<usize>) -> Range<usize> {
        let start = self.tokens.get(positions.start).map_or(self.end, |(_, span)| span.start);
        let end =
            positions.end.checked_sub(1).and_then(|last| self.tokens.get(last)).map_or(start, |(_, span)| span.end);
        start..end.max(start)
    }

    fn here(&self) -> Range<usize> {
        self.tokens.get(self.position).map_or(self.end..self.end, |(_, span)| span.clone())
    }

    fn expect_symbol(&mut self, symbol: char, what: &str) -> Result<Range<usize>, ExprError> {
        match self.next() {
            Some((Token::Symbol(found), span)) if found == symbol => Ok(span),
            Some((token, span)) => Err(ExprError { message: format!("expected {what}, found {token}"), span }),
            None => Err(ExprError { message: format!("expected {what} at the end"), span: self.end..self.end }),
        }
    }

    fn sum(&mut self) -> Result<Node, ExprError> {
        let mut node = self.product()?;
        while let Some(Token::Symbol(op @ ('+' | '-'))) = self.peek().cloned() {
            self.position += 1;
            node = Node::Binary(op, Box::new(node), Box::new(self.product()?));
        }
        Ok(node)
    }

    fn product(&mut self) -> Result<Node, ExprError> {
        let mut node = self.unary()?;
        while let Some(Token::Symbol(op @ ('*' | '/'))) = self.peek().cloned() {
            self.position += 1;
            node = Node::Binary(op, Box::new(node), Box::new(self.unary()?));
        }
        Ok(node)
    }

    fn unary(&mut self) -> Result<Node, ExprError> {
        if self.peek() == Some(&Token::Symbol('-')) {
            self.position += 1;
            return Ok(Node::Neg(Box::new(self.unary()?)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Node, ExprError> {
        let span = self.here();
        match self.next() {
            Some((Token::Number(value, _), _)) => Ok(Node::Number(value)),
            Some((Token::Symbol('('), _)) => {
                let inner = self.sum()?;
                self.expect_symbol(')', "`)`")?;
                Ok(inner)
            }
            Some((Token::Ident(workload), _)) => self.reference(workload, span.start),
            Some((token, span)) => {
                Err(ExprError { message: format!("expected a number or a reference, found {token}"), span })
            }
            None => Err(ExprError { message: "expression ends too early".into(), span }),
        }
    }

    /// Optional selectors `[name=value, ...]` after a workload id starting at `start`.
    fn selectors(&mut self, start: usize) -> Result<Vec<(String, Value)>, ExprError> {
        let mut selectors = Vec::new();
        if self.peek() == Some(&Token::Symbol('[')) {
            self.position += 1;
            loop {
                let name = match self.next() {
                    Some((Token::Ident(name), _)) => name,
                    Some((token, span)) => {
                        return Err(ExprError { message: format!("expected a parameter name, found {token}"), span });
                    }
                    None => return Err(ExprError { message: "unterminated selector".into(), span: start..self.end }),
                };
                self.expect_symbol('=', "`=` in the selector")?;
                let sign = if self.peek() == Some(&Token::Symbol('-')) {
                    self.position += 1;
                    -1.0
                } else {
                    1.0
                };
                let value = match self.next() {
                    Some((Token::Number(number, true), _)) if number.abs() < 9e15 => Value::Int((sign * number) as i64),
                    Some((Token::Number(number, _), _)) => Value::Float(sign * number),
                    Some((token, span)) if sign < 0.0 => {
                        return Err(ExprError { message: format!("expected a number after `-`, found {token}"), span });
                    }
                    Some((Token::Ident(text), _)) if text == "true" || text == "false" => Value::Bool(text == "true"),
                    Some((Token::Ident(text) | Token::Text(text), _)) => Value::Text(text),
                    Some((token, span)) => {
                        return Err(ExprError { message: format!("expected a value, found {token}"), span });
                    }
                    None => return Err(ExprError { message: "unterminated selector".into(), span: start..self.end }),
                };
                selectors.push((name, value));
                match self.next() {
                    Some((Token::Symbol(','), _)) => continue,
                    Some((Token::Symbol(']'), _)) => break,
                    Some((token, span)) => {
                        return Err(ExprError { message: format!("expected `,` or `]`, found {token}"), span });
                    }
                    None => return Err(ExprError { message: "unterminated selector".into(), span: start..self.end }),
                }
            }
        }
        Ok(selectors)
    }

    fn reference(&mut self, workload: String, start: usize) -> Result<Node, ExprError> {
        let selectors = self.selectors(start)?;
        let mut parts = Vec::new();
        let mut end = start + workload.len();
        while self.peek() == Some(&Token::Symbol('.')) {
            self.position += 1;
            match self.next() {
                Some((Token::Ident(part), span)) => {
                    end = span.end;
                    parts.push((part, span));
                }
                Some((token, span)) => {
                    return Err(ExprError { message: format!("expected a name after `.`, found {token}"), span });
                }
                None => return Err(ExprError { message: "expected a name after `.`".into(), span: end..self.end }),
            }
        }
        let span = start..end;
        let usage = format!(
            "expected `{workload}.warm.median` or `{workload}.warm.METRIC.median` (mode cold|warm; statistic one of {})",
            Stat::ALL.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ")
        );
        let (mode, quantity, stat) = match parts.as_slice() {
            [(mode, _), (stat, stat_span)] => (mode, "time".to_owned(), (stat, stat_span)),
            [(mode, _), (quantity, _), (stat, stat_span)] => (mode, quantity.clone(), (stat, stat_span)),
            _ => return Err(ExprError { message: usage, span }),
        };
        let mode = match mode.as_str() {
            "cold" => Mode::Cold,
            "warm" => Mode::Warm,
            _ => return Err(ExprError { message: usage, span }),
        };
        let stat = Stat::parse(stat.0).ok_or_else(|| ExprError {
            message: format!("unknown statistic `{}`; {usage}", stat.0),
            span: stat.1.clone(),
        })?;
        Ok(Node::Ref(Reference { workload, selectors, mode, quantity, stat, span }))
    }
}

#[cfg(test)]
mod tests {
    use super::{Cmp, Node, Selected, Stat, parse, parse_selected};
    use crate::kernel::Value;

    #[test]
    fn intervals_follow_the_expression() {
        let condition = parse("a.warm.median / (b.warm.median - c.warm.median) * -d.warm.median + 1 >= 0").unwrap();
        let given = [(2.0, 4.0), (3.0, 5.0), (1.0, 2.0), (1.0, 3.0)];
        let mut next = given.into_iter();
        // a / (b - c): [2, 4] / [1, 4] = [0.5, 4]; times -[1, 3] = [-12, -0.5]; plus 1.
        assert_eq!(condition.left.eval_interval(&mut |_| next.next()), Some((-11.0, 0.5)));
        // A divisor that may be 0 leaves the range unbounded.
        let mut next = [(1.0, 2.0), (3.0, 5.0), (2.0, 4.0), (1.0, 1.0)].into_iter();
        assert_eq!(condition.left.eval_interval(&mut |_| next.next()), Some((f64::NEG_INFINITY, f64::INFINITY)));
        // Every point value lies in the range.
        let points = [3.0, 4.5, 1.5, 2.0];
        let mut next = points.into_iter();
        let value = condition.left.eval(&mut |_| next.next()).unwrap();
        assert!((-11.0..=0.5).contains(&value), "{value}");
        // A bound of 0 times an infinite one is 0: [0, 2] * [5, inf] = [0, inf].
        let product = parse("a.warm.median * b.warm.median >= 0").unwrap();
        let mut next = [(0.0, 2.0), (5.0, f64::INFINITY)].into_iter();
        assert_eq!(product.left.eval_interval(&mut |_| next.next()), Some((0.0, f64::INFINITY)));
        // An undetermined bound (inf - inf) leaves the range unbounded, never NaN.
        let difference = parse("a.warm.median - b.warm.median >= 0").unwrap();
        let mut next = [(f64::INFINITY, f64::INFINITY), (f64::INFINITY, f64::INFINITY)].into_iter();
        assert_eq!(difference.left.eval_interval(&mut |_| next.next()), Some((f64::NEG_INFINITY, f64::INFINITY)));
    }

    #[test]
    fn ratios_of_two_references_fold_into_terms() {
        let condition = parse(
            "a.warm.median / b.warm.median / (c.warm.median / d.cold.median) - e.warm.median / f.warm.median >= 1",
        )
        .unwrap();
        // c / d mixes modes: not a ratio of samples.
        assert_eq!(condition.left.reference_ratios(), vec![0, 4]);
        let folded = condition.left.fold_ratios(&[4]);
        assert_eq!(
            folded.references().iter().map(|reference| reference.workload.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c", "d", "e"]
        );
        // (a / b) / (c / d) - e, with e standing for e / f.
        let mut next = [8.0, 2.0, 3.0, 1.5, 1.0].into_iter();
        assert_eq!(folded.eval(&mut |_| next.next()), Some(1.0));
        let all = condition.left.fold_ratios(&[0, 4]);
        assert_eq!(all.references().len(), 4);
        let mut next = [4.0, 3.0, 1.5, 1.0].into_iter();
        assert_eq!(all.eval(&mut |_| next.next()), Some(1.0));
    }

    #[test]
    fn sums_and_products_group_from_the_left() {
        // ((10 - 3) - 2) + 1, not 10 - (3 - (2 + 1)).
        let condition = parse("a.warm.median - b.warm.median - c.warm.median + d.warm.median >= 0").unwrap();
        let mut next = [10.0, 3.0, 2.0, 1.0].into_iter();
        assert_eq!(condition.left.eval(&mut |_| next.next()), Some(6.0));
        // (12 / 3) * 2, not 12 / (3 * 2); and a product binds before a sum.
        let condition = parse("a.warm.median / b.warm.median * c.warm.median - 1 >= 0").unwrap();
        let mut next = [12.0, 3.0, 2.0].into_iter();
        assert_eq!(condition.left.eval(&mut |_| next.next()), Some(7.0));
    }

    #[test]
    fn comparisons_hold_mirror_and_print() {
        // Each comparison, its mirror, and whether it holds for 1, 2 and 3 against 2.
        let cases = [
            (">=", Cmp::Le, [false, true, true]),
            (">", Cmp::Lt, [false, false, true]),
            ("<=", Cmp::Ge, [true, true, false]),
            ("<", Cmp::Gt, [true, false, false]),
            ("==", Cmp::Eq, [false, true, false]),
            ("!=", Cmp::Ne, [true, false, true]),
        ];
        for (symbol, mirrored, holds) in cases {
            let cmp = parse(&format!("a.warm.median {symbol} 2")).unwrap().cmp;
            assert_eq!((cmp.symbol(), cmp.mirrored()), (symbol, mirrored));
            assert_eq!([1.0, 2.0, 3.0].map(|left| cmp.holds(left, 2.0)), holds, "{symbol}");
            // `2 CMP a` reads as `a MIRRORED 2`.
            assert_eq!(parse(&format!("2 {symbol} a.warm.median")).unwrap().cmp, mirrored, "2 {symbol} a");
        }
    }

    #[test]
    fn parses_ratio_condition() {
        let condition = parse("scalar[size=1024].warm.median / fast[size=1024].warm.median >= 4").unwrap();
        assert_eq!(condition.cmp, Cmp::Ge);
        assert_eq!(condition.right, Node::Number(4.0));
        let (numerator, denominator) = condition.ratio().unwrap();
        assert_eq!(numerator.workload, "scalar");
        assert_eq!(numerator.selectors, vec![("size".to_owned(), Value::Int(1024))]);
        assert_eq!(denominator.workload, "fast");
        assert_eq!(denominator.stat, Stat::Median);
        assert!(numerator.is_time());
    }

    #[test]
    fn reads_a_constant_on_the_left_as_the_mirrored_comparison() {
        let condition = parse("4 < scalar.warm.median / fast.warm.median").unwrap();
        assert_eq!((condition.cmp, &condition.right), (Cmp::Gt, &Node::Number(4.0)));
        assert_eq!(condition.ratio().map(|(numerator, _)| numerator.workload.as_str()), Some("scalar"));
        let condition = parse("0.5 >= fast.warm.median").unwrap();
        assert_eq!((condition.cmp, &condition.right), (Cmp::Le, &Node::Number(0.5)));
        assert_eq!(condition.text, "0.5 >= fast.warm.median");
        // Two references, or two constants, keep their sides.
        assert_eq!(parse("a.warm.median <= b.warm.median").unwrap().cmp, Cmp::Le);
        assert_eq!(parse("1 <= 2").unwrap().cmp, Cmp::Le);
    }

    #[test]
    fn selectors_take_negative_numbers() {
        let condition = parse("a[x=-1, y=-0.5, z=2].warm.median >= 0").unwrap();
        let selectors = &condition.references()[0].selectors;
        assert_eq!(selectors[0].1, Value::Int(-1));
        assert_eq!(selectors[1].1, Value::Float(-0.5));
        assert_eq!(selectors[2].1, Value::Int(2));
        let condition = parse("a[on=true, off=false, kind=dense, name=\"x y\"].warm.median >= 0").unwrap();
        let values: Vec<&Value> = condition.references()[0].selectors.iter().map(|(_, value)| value).collect();
        assert_eq!(
            values,
            [&Value::Bool(true), &Value::Bool(false), &Value::Text("dense".into()), &Value::Text("x y".into())]
        );
        assert_eq!(parse("a[x=-b].warm.median >= 0").unwrap_err().message, "expected a number after `-`, found `b`");
    }

    #[test]
    fn parses_a_selected_workload() {
        let plain = parse_selected("fast").unwrap();
        assert_eq!(plain, Selected { workload: "fast".into(), selectors: Vec::new() });
        let selected = parse_selected("tree[traversal=dense, points=4096]").unwrap();
        assert_eq!(selected.workload, "tree");
        assert_eq!(
            selected.selectors,
            vec![("traversal".to_owned(), Value::Text("dense".into())), ("points".to_owned(), Value::Int(4096))]
        );
        assert_eq!(selected.to_string(), "tree[traversal=dense,points=4096]");
        let error = parse_selected("fast.warm.median").unwrap_err();
        assert!(error.message.starts_with("unexpected `.`"), "{}", error.message);
        assert_eq!(error.span, 4..5);
        assert_eq!(parse_selected("").unwrap_err().message, "expected a workload id");
        assert_eq!(parse_selected("[x=1]").unwrap_err().message, "expected a workload id, found `[`");
    }

    #[test]
    fn parses_metrics_and_arithmetic() {
        let condition = parse("a.warm.bw_bytes.max <= 2 * (b.cold.mean + 1e-3) - -1").unwrap();
        let references = condition.references();
        assert_eq!(references.len(), 2);
        assert_eq!(references[0].quantity, "bw_bytes");
        assert!(condition.ratio().is_none());
        let value = condition.right.eval(&mut |_| Some(1.0)).unwrap();
        assert!((value - (2.0 * 1.001 + 1.0)).abs() < 1e-12);
    }

    #[test]
    fn reports_error_spans() {
        let error = parse("a.warm.median >= ").unwrap_err();
        assert_eq!(error.message, "expression ends too early");
        let error = parse("a.warm.average >= 1").unwrap_err();
        assert_eq!(error.span, 7..14);
        let error = parse("a.warm.median >= 1e400").unwrap_err();
        assert_eq!(
            (error.message.as_str(), error.span.clone()),
            ("number `1e400` is too large for a 64-bit float", 17..22)
        );
        let error = parse("a.hot.median >= 1").unwrap_err();
        assert!(error.message.starts_with("expected `a.warm.median`"), "{}", error.message);
    }
}
