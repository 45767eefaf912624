//! Fuzzes `s3mm_core::csv_merge::CsvMerger` against a model of the rules in
//! its module doc: the first file's header is the header (or the one given
//! to `with_header`); one UTF-8 BOM is dropped; CRLF, LF (and csv-core's bare
//! CR) end records, and every row is written with the header's terminator
//! (LF when it has none), so a missing final newline is added; blank
//! lines are not rows; an empty or header-only file adds no row; a file
//! whose header differs, or that ends inside a quoted field, adds nothing;
//! rows with another field count are kept and counted.
//!
//! The model frames records with its own small state machine (csv-core's
//! defaults: `,` `"` doubled quotes, no escapes, no comments), not with the
//! code under test. Asserted after every push and at the end:
//! - the outcome (Empty / UnclosedQuote / HeaderOnly / HeaderMismatch with
//!   its previews / Merged with rows and odd_rows) is the model's;
//! - `rows()`, `bytes()` and `buffered()` add up, whenever `take` is called;
//! - the whole output is byte for byte the header line once, then each
//!   merged file's rows in order, each row's content exactly as in the file
//!   and its terminator the header's; rejected files add nothing;
//! - the output read back with the `csv` crate is the header record then
//!   `rows()` records, field for field those the `csv` crate reads from the
//!   merged files.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use s3mm_core::csv_merge::{CsvMerger, FileOutcome};

const BOM: &[u8] = b"\xEF\xBB\xBF";

#[derive(Arbitrary, Debug)]
struct Input {
    /// Header content every `shared` file starts with.
    header: Vec<u8>,
    /// Start from `with_header(header + terminator)` instead of `new()`.
    fixed_header: Option<Terminator>,
    files: Vec<File>,
    /// Bit i: drain with `take` after push i.
    drain: u64,
}

#[derive(Arbitrary, Debug)]
struct File {
    bom: bool,
    /// Prepend the shared header and this terminator; else `body` is all.
    shared: Option<Terminator>,
    body: Vec<u8>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Terminator {
    Lf,
    CrLf,
    Cr,
    None,
}

impl Terminator {
    fn bytes(self) -> &'static [u8] {
        match self {
            Self::Lf => b"\n",
            Self::CrLf => b"\r\n",
            Self::Cr => b"\r",
            Self::None => b"",
        }
    }
}

/// One record as the model frames it.
#[derive(Debug, Clone)]
struct Rec {
    content: Vec<u8>,
    /// The record's own terminator: empty at end of input.
    term: Vec<u8>,
    fields: usize,
    /// The input ended inside a quoted field.
    open_quote: bool,
}

/// Splits a file (BOM already removed) into records the way csv-core does
/// with its default settings.
fn frame(data: &[u8]) -> Vec<Rec> {
    #[derive(PartialEq)]
    enum S {
        StartRecord,
        StartField,
        InField,
        InQuoted,
        AfterQuote,
    }
    let is_term = |b: u8| b == b'\r' || b == b'\n';
    let mut recs = Vec::new();
    let (mut state, mut start, mut fields, mut i) = (S::StartRecord, 0, 0, 0);
    while i < data.len() {
        let b = data[i];
        let ends_record = match state {
            S::StartRecord => {
                if !is_term(b) {
                    start = i;
                    fields = 1;
                    state = S::StartField;
                    continue;
                }
                false
            }
            S::StartField | S::InField | S::AfterQuote if b == b',' => {
                fields += 1;
                state = S::StartField;
                false
            }
            S::StartField | S::InField | S::AfterQuote if is_term(b) => true,
            S::StartField | S::AfterQuote if b == b'"' => {
                state = S::InQuoted;
                false
            }
            S::StartField | S::InField | S::AfterQuote => {
                state = S::InField;
                false
            }
            S::InQuoted => {
                if b == b'"' {
                    state = S::AfterQuote;
                }
                false
            }
        };
        if ends_record {
            let end = if b == b'\r' && data.get(i + 1) == Some(&b'\n') { i + 2 } else { i + 1 };
            recs.push(Rec { content: data[start..i].to_vec(), term: data[i..end].to_vec(), fields, open_quote: false });
            state = S::StartRecord;
            i = end;
        } else {
            i += 1;
        }
    }
    if state != S::StartRecord {
        recs.push(Rec { content: data[start..].to_vec(), term: Vec::new(), fields, open_quote: state == S::InQuoted });
    }
    recs
}

fn strip_bom(data: &[u8]) -> &[u8] {
    data.strip_prefix(BOM).unwrap_or(data)
}

/// csv_merge's report preview: at most 200 bytes, then the length.
fn preview(header: &[u8]) -> String {
    if header.len() <= 200 {
        return String::from_utf8_lossy(header).into_owned();
    }
    format!("{}… ({} bytes)", String::from_utf8_lossy(&header[..200]), header.len())
}

/// Reads CSV with the `csv` crate: no header handling, any field count.
fn read_csv(data: &[u8]) -> Vec<Vec<Vec<u8>>> {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(data);
    reader
        .byte_records()
        .map(|r| r.expect("reading from memory cannot fail").iter().map(<[u8]>::to_vec).collect())
        .collect()
}

/// The merge as the model expects it to go.
#[derive(Default)]
struct Model {
    header: Option<Rec>,
    terminator: Vec<u8>,
    output: Vec<u8>,
    rows: u64,
    /// Records the `csv` crate should read back from the output.
    records: Vec<Vec<Vec<u8>>>,
}

impl Model {
    fn set_header(&mut self, data: &[u8], rec: &Rec) {
        self.terminator = if rec.term.is_empty() { b"\n".to_vec() } else { rec.term.clone() };
        self.output.extend_from_slice(&rec.content);
        self.output.extend_from_slice(&self.terminator.clone());
        self.records.extend(read_csv(data).into_iter().take(1));
        self.header = Some(rec.clone());
    }

    /// The outcome the merger should report, and whether the merge's header
    /// (from `with_header`) ends in an open quote, when the previews differ.
    fn push(&mut self, raw: &[u8]) -> (FileOutcome, bool) {
        let data = strip_bom(raw);
        let recs = frame(data);
        let open_header = self.header.as_ref().is_some_and(|h| h.open_quote);
        let Some(last) = recs.last() else {
            assert!(data.iter().all(|b| *b == b'\r' || *b == b'\n'), "only blank lines frame to no record");
            return (FileOutcome::Empty, open_header);
        };
        if last.open_quote {
            return (FileOutcome::UnclosedQuote, open_header);
        }
        (self.push_records(data, &recs), open_header)
    }

    fn push_records(&mut self, data: &[u8], recs: &[Rec]) -> FileOutcome {
        let first = &recs[0];
        match &self.header {
            None => self.set_header(data, first),
            Some(header) if header.content != first.content => {
                return FileOutcome::HeaderMismatch {
                    expected: preview(&header.content),
                    found: preview(&first.content),
                };
            }
            Some(_) => {}
        }
        if recs.len() == 1 {
            return FileOutcome::HeaderOnly;
        }
        let header_fields = self.header.as_ref().map_or(0, |h| h.fields);
        let mut odd_rows = 0;
        for rec in &recs[1..] {
            self.output.extend_from_slice(&rec.content);
            // Every row ends as the header does.
            self.output.extend_from_slice(&self.terminator);
            if rec.fields != header_fields {
                odd_rows += 1;
            }
        }
        let rows = (recs.len() - 1) as u64;
        self.rows += rows;
        self.records.extend(read_csv(data).into_iter().skip(1));
        FileOutcome::Merged { rows, odd_rows }
    }
}

fuzz_target!(|input: Input| {
    let mut model = Model::default();
    let mut merger = match input.fixed_header {
        Some(term) => {
            let line = [input.header.as_slice(), term.bytes()].concat();
            let data = strip_bom(&line);
            // with_header ignores a header that ends inside quotes, as push
            // refuses such a file.
            if let Some(first) = frame(data).first().filter(|first| !first.open_quote) {
                model.set_header(data, first);
            }
            CsvMerger::with_header(&line)
        }
        None => CsvMerger::new(),
    };
    let mut output = merger.take();
    let mut taken = output.len() as u64;
    assert_eq!(merger.bytes(), taken, "bytes() after with_header");

    for (i, file) in input.files.iter().enumerate().take(64) {
        let mut data = Vec::new();
        if file.bom {
            data.extend_from_slice(BOM);
        }
        if let Some(term) = file.shared {
            data.extend_from_slice(&input.header);
            data.extend_from_slice(term.bytes());
        }
        data.extend_from_slice(&file.body);

        let rows_before = merger.rows();
        let bytes_before = merger.bytes();
        let header_before = merger.header_line();
        let output_before = model.output.len() as u64;
        let outcome = merger.push(&data);
        let (expected, open_header) = model.push(&data);

        match (&outcome, &expected) {
            (FileOutcome::HeaderMismatch { .. }, FileOutcome::HeaderMismatch { .. }) if open_header => {}
            (FileOutcome::Merged { rows, odd_rows }, FileOutcome::Merged { rows: r, odd_rows: o }) => {
                assert_eq!((rows, odd_rows), (r, o), "file {i}: rows and odd rows");
                assert!(odd_rows <= rows && *rows > 0);
                assert_eq!(merger.rows(), rows_before + rows, "file {i}: rows() adds the file's rows");
            }
            _ => assert_eq!(outcome, expected, "file {i}: {data:?}"),
        }
        if !matches!(outcome, FileOutcome::Merged { .. }) {
            assert_eq!(merger.rows(), rows_before, "file {i}: {outcome:?} adds no row");
        }
        let rejected = matches!(outcome, FileOutcome::HeaderMismatch { .. } | FileOutcome::UnclosedQuote);
        if rejected || header_before.is_some() && !matches!(outcome, FileOutcome::Merged { .. }) {
            assert_eq!(merger.bytes(), bytes_before, "file {i}: {outcome:?} adds nothing");
        }
        assert_eq!(merger.bytes() - bytes_before, model.output.len() as u64 - output_before, "file {i}: bytes added");
        assert_eq!(merger.buffered() as u64, merger.bytes() - taken, "buffered() is what take has not drained");
        if input.drain >> (i % 64) & 1 == 1 {
            let chunk = merger.take();
            taken += chunk.len() as u64;
            output.extend_from_slice(&chunk);
            assert_eq!(merger.buffered(), 0);
        }
    }
    output.extend_from_slice(&merger.take());
    assert_eq!(merger.bytes(), output.len() as u64, "bytes() is the whole output");
    assert_eq!(merger.rows(), model.rows, "rows()");

    match merger.header_line() {
        Some(line) => {
            assert!(output.starts_with(&line), "the output starts with the header line");
            assert!(matches!(line.last(), Some(b'\n' | b'\r')), "the header line is terminated");
        }
        None => {
            assert!(output.is_empty(), "no header, no output");
            assert_eq!(merger.rows(), 0);
        }
    }
    let header = model.header.as_ref().map(|h| [h.content.as_slice(), &model.terminator].concat());
    assert_eq!(merger.header_line(), header, "header line");
    if let Some(line) = merger.header_line() {
        assert_eq!(merger.header().map(<[u8]>::len), Some(line.len() - merger_terminator_len(&line)));
    }
    assert!(output == model.output, "merged output\n got: {:?}\nwant: {:?}", bstr(&output), bstr(&model.output));
    let read_back = read_csv(&output);
    if merger.header().is_some() {
        assert_eq!(read_back.len() as u64, 1 + merger.rows(), "the output reads back as the header and rows() rows");
    }
    assert_eq!(read_back, model.records, "the output reads back as the merged files' records");
});

/// Length of the header line's terminator: 2 for CRLF, else 1.
fn merger_terminator_len(line: &[u8]) -> usize {
    if line.ends_with(b"\r\n") { 2 } else { 1 }
}

fn bstr(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
