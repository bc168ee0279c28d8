//! Dataset loaders on the committed fixtures (`tests/app_fixtures/`), on an in-test verl
//! Parquet file, on the committed synthetic math set, and on the real reference files in
//! `../shared/datasets` (skipped, with a note, when that folder is absent).

use arrow_schema::{DataType, Field, Fields, Schema};
use cove::data::code::{CodeLayout, load_code};
use cove::data::math::{MathFields, load_math};
use cove::data::{DataError, Prompt, read_rows};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/app_fixtures")
        .join(name)
}

#[test]
fn gsm8k_answers_come_from_the_hash_line() {
    let rows = load_math(&fixture("gsm8k.jsonl"), None).unwrap();
    assert_eq!(rows.len(), 2, "the blank line is skipped");
    assert_eq!(rows[0].answer, "72");
    assert_eq!(rows[1].answer, "2,400");
    assert_eq!(rows[1].id, "gsm8k-3", "id falls back to file stem and line");
    assert!(matches!(&rows[0].prompt, Prompt::Text(t) if t.starts_with("Natalia")));
}

#[test]
fn math500_and_amc_layouts() {
    let rows = load_math(&fixture("math500.jsonl"), None).unwrap();
    assert_eq!(rows[1].answer, "\\frac{5}{6}");
    assert_eq!(rows[1].id, "test/prealgebra/2.json");
    assert_eq!(rows[0].level, Some(2));
    let amc = load_math(&fixture("amc.jsonl"), None).unwrap();
    assert_eq!(amc[0].answer, "27.0", "a JSON float keeps its written form");
    assert_eq!(amc[0].id, "0");
}

#[test]
fn bad_rows_name_file_row_and_field() {
    let err = load_math(&fixture("gsm8k_bad.jsonl"), None).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DataError::BadRow { row: 2, .. }), "{msg}");
    assert!(
        msg.contains("gsm8k_bad.jsonl: row 2") && msg.contains("`answer`"),
        "{msg}"
    );

    let err = load_math(&fixture("not_json.jsonl"), None).unwrap_err();
    assert!(
        err.to_string()
            .contains("not_json.jsonl: row 2: not valid JSON"),
        "{err}"
    );

    let custom = MathFields {
        prompt: "problem".into(),
        answer: "final".into(),
        ..MathFields::problem_answer()
    };
    let err = load_math(&fixture("math500.jsonl"), Some(&custom)).unwrap_err();
    assert!(
        err.to_string().contains("row 1: missing field `final`"),
        "{err}"
    );

    let err = read_rows(&fixture("gsm8k.csv")).unwrap_err();
    assert!(matches!(err, DataError::UnknownFormat { .. }));
}

/// Writes a verl-format Parquet file (nested `prompt` list of structs, `reward_model` and
/// `extra_info` structs) from JSON rows with the given `ground_truth` values.
fn write_verl_parquet(path: &Path, ground_truths: &[&str]) {
    let message = DataType::Struct(Fields::from(vec![
        Field::new("content", DataType::Utf8, true),
        Field::new("role", DataType::Utf8, true),
    ]));
    let schema = Arc::new(Schema::new(vec![
        Field::new("data_source", DataType::Utf8, true),
        Field::new(
            "prompt",
            DataType::List(Arc::new(Field::new("item", message, true))),
            true,
        ),
        Field::new("ability", DataType::Utf8, true),
        Field::new(
            "reward_model",
            DataType::Struct(Fields::from(vec![
                Field::new("ground_truth", DataType::Utf8, true),
                Field::new("style", DataType::Utf8, true),
            ])),
            true,
        ),
        Field::new(
            "extra_info",
            DataType::Struct(Fields::from(vec![
                Field::new("index", DataType::Int64, true),
                Field::new("split", DataType::Utf8, true),
            ])),
            true,
        ),
    ]));
    let mut json = String::new();
    for (i, gt) in ground_truths.iter().enumerate() {
        let row = serde_json::json!({
            "data_source": "math_dapo",
            "prompt": [
                {"role": "system", "content": "Reason step by step."},
                {"role": "user", "content": format!("What is {i}+{i}?")},
            ],
            "ability": "MATH",
            "reward_model": {"ground_truth": gt, "style": "rule"},
            "extra_info": {"index": 100 + i, "split": "train"},
        });
        json.push_str(&row.to_string());
        json.push('\n');
    }
    let reader = arrow_json::ReaderBuilder::new(schema.clone())
        .build(std::io::Cursor::new(json))
        .unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
    for batch in reader {
        writer.write(&batch.unwrap()).unwrap();
    }
    writer.close().unwrap();
}

#[test]
fn verl_parquet_math() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train.parquet");
    write_verl_parquet(&path, &["0", "2", "4"]);
    let rows = load_math(&path, None).unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[2].answer, "4");
    assert_eq!(rows[2].id, "102");
    assert_eq!(rows[2].data_source, "math_dapo");
    let Prompt::Chat(messages) = &rows[1].prompt else {
        panic!("verl prompt should be chat messages: {:?}", rows[1].prompt)
    };
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].role, "system");
    assert_eq!(rows[1].prompt.user_text(), "What is 1+1?");
}

#[test]
fn verl_parquet_bad_row_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.parquet");
    write_verl_parquet(&path, &["1", ""]);
    let err = load_math(&path, None).unwrap_err();
    assert!(
        err.to_string()
            .contains("bad.parquet: row 2: field `reward_model.ground_truth` is an empty answer"),
        "{err}"
    );
    std::fs::write(dir.path().join("junk.parquet"), b"not parquet").unwrap();
    let err = load_math(&dir.path().join("junk.parquet"), None).unwrap_err();
    assert!(matches!(err, DataError::Parquet { .. }), "{err}");
}

#[test]
fn verl_parquet_code_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("code.parquet");
    let io = r#"{"inputs": ["1\n"], "outputs": ["2\n"]}"#;
    write_verl_parquet(&path, &[io]);
    let rows = load_code(&path, Some(CodeLayout::Verl)).unwrap();
    assert_eq!(
        rows[0].tests,
        serde_json::json!({"kind": "stdio", "inputs": ["1\n"], "outputs": ["2\n"]})
    );
}

#[test]
fn apps_rows_become_stdio_and_call_tests() {
    let rows = load_code(&fixture("apps.jsonl"), None).unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(
        rows[0].tests,
        serde_json::json!({"kind": "stdio", "inputs": ["3\n", "12\n"], "outputs": ["9\n", "144\n"]})
    );
    assert_eq!(
        rows[0].solution.as_deref(),
        Some("n = int(input())\nprint(n * n)\n")
    );
    assert_eq!(rows[0].id, "11");
    assert_eq!(
        rows[1].tests,
        serde_json::json!({"kind": "call", "fn_name": "add", "inputs": [[1, 2], [5, 7]], "outputs": [[3], [12]]})
    );
    assert_eq!(
        rows[2].tests["inputs"][0], "a\nb",
        "TACO line lists are joined"
    );
    assert_eq!(rows[2].solution, None);
    let err = load_code(&fixture("apps_bad.jsonl"), None).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("apps_bad.jsonl: row 2: field `input_output`: 2 inputs but 1 outputs"),
        "{msg}"
    );
}

#[test]
fn humaneval_and_mbpp_rows_become_assert_tests() {
    let he = load_code(&fixture("humaneval.jsonl"), None).unwrap();
    assert_eq!(he[0].tests["kind"], "assert");
    assert_eq!(he[0].tests["entry_point"], "add");
    assert!(
        he[0].tests["code"]
            .as_str()
            .unwrap()
            .ends_with("check(add)\n")
    );
    assert!(
        he[0]
            .solution
            .as_deref()
            .unwrap()
            .contains("def add(a: int, b: int) -> int:")
    );
    assert!(
        he[0]
            .solution
            .as_deref()
            .unwrap()
            .ends_with("return a + b\n")
    );
    let mbpp = load_code(&fixture("mbpp.jsonl"), None).unwrap();
    assert_eq!(mbpp[0].tests["entry_point"], "similar_elements");
    let code = mbpp[0].tests["code"].as_str().unwrap();
    assert_eq!(code.lines().count(), 2, "{code}");
    assert!(
        mbpp[0]
            .prompt
            .user_text()
            .contains("Your code should pass this test:")
    );
}

#[test]
fn cove_code_rows_pass_through_and_bad_kinds_are_named() {
    let rows = load_code(&fixture("cove_code.jsonl"), None).unwrap();
    assert_eq!(rows[1].tests["kind"], "call");
    assert_eq!(rows[1].id, "inc");
    let err = load_code(&fixture("cove_code_bad.jsonl"), None).unwrap_err();
    assert!(
        err.to_string()
            .contains("row 1: field `tests.kind` is `fuzz`"),
        "{err}"
    );
}

#[test]
fn committed_synthetic_set_matches_its_generator() {
    use cove::data::synth::{DEFAULT_SEED, DEFAULT_TEST, DEFAULT_TRAIN, generate_splits};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/math");
    let (train, test) = generate_splits(DEFAULT_SEED, DEFAULT_TRAIN, DEFAULT_TEST);
    for (name, problems) in [("train.jsonl", &train), ("test.jsonl", &test)] {
        let loaded = load_math(&root.join(name), None).unwrap();
        assert_eq!(loaded.len(), problems.len(), "{name}");
        for (l, p) in loaded.iter().zip(problems.iter()) {
            assert_eq!(
                (&l.id, l.prompt.user_text(), &l.answer, l.level),
                (&p.id, p.problem.as_str(), &p.answer, Some(p.level))
            );
        }
    }
}

/// The shared reference datasets: `../shared/datasets` beside the repository (CI's
/// layout), else `/work/shared/datasets` (the development machines').
fn shared_datasets() -> Option<PathBuf> {
    let beside = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets");
    [beside, PathBuf::from("/work/shared/datasets")]
        .into_iter()
        .find(|p| p.is_dir())
}

#[test]
fn real_reference_datasets_load_completely() {
    let Some(root) = shared_datasets() else {
        eprintln!("note: ../shared/datasets is absent; skipping the real-dataset check");
        return;
    };
    for (file, rows) in [
        ("gsm8k/train.jsonl", 7473),
        ("gsm8k/test.jsonl", 1319),
        ("math500/test.jsonl", 500),
        ("aime24/test.jsonl", 30),
        ("aime25/test.jsonl", 30),
        ("amc23/test.jsonl", 40),
    ] {
        let path = root.join(file);
        if !path.exists() {
            eprintln!("note: {} is absent; skipped", path.display());
            continue;
        }
        let loaded = load_math(&path, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(loaded.len(), rows, "{file}");
        assert!(
            loaded
                .iter()
                .all(|e| !e.answer.is_empty() && !e.prompt.user_text().is_empty())
        );
        if file.starts_with("gsm8k") {
            assert!(loaded.iter().all(|e| !e.answer.contains("####")), "{file}");
        }
    }
}

/// Levels are read as numbers (the synthetic set) and as MATH's "Level N" strings.
#[test]
fn levels_read_as_numbers_and_as_math_strings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("math.jsonl");
    std::fs::write(
        &path,
        "{\"problem\": \"1+1?\", \"answer\": \"2\", \"level\": \"Level 5\"}\n\
         {\"problem\": \"2+2?\", \"answer\": \"4\", \"level\": 3}\n\
         {\"problem\": \"3+3?\", \"answer\": \"6\"}\n",
    )
    .unwrap();
    let levels: Vec<Option<u32>> = load_math(&path, None)
        .unwrap()
        .iter()
        .map(|r| r.level)
        .collect();
    assert_eq!(levels, vec![Some(5), Some(3), None]);
}

/// `train-math --train FILE` on a file without levels: the default level filter names
/// itself and the fix; `data.levels = []` takes every row.
#[test]
fn a_level_filter_that_keeps_nothing_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("gsm.jsonl");
    std::fs::write(
        &data,
        "{\"question\": \"What is 2+3?\", \"answer\": \"#### 5\"}\n\
         {\"question\": \"What is 4+4?\", \"answer\": \"#### 8\"}\n",
    )
    .unwrap();
    let run = |out: &str, extra: &[&str]| {
        let out = dir.path().join(out);
        let fixed = [
            "--quiet",
            "--steps",
            "1",
            "--set",
            "model.path=\"tiny\"",
            "--set",
            "data.eval_limit=2",
            "--set",
            "trainer.prompts_per_step=2",
            "--train",
        ];
        let mut args: Vec<&OsStr> = fixed.map(OsStr::new).to_vec();
        args.extend([data.as_os_str(), OsStr::new("--out"), out.as_os_str()]);
        args.extend(extra.iter().flat_map(|s| ["--set", s]).map(OsStr::new));
        crate::test_util::run_binary(env!("CARGO_BIN_EXE_train-math"), args)
    };
    let (ok, err) = run("filtered", &[]);
    assert!(
        !ok && err.contains("data.levels = [1, 4] keeps none of the 2 rows"),
        "{err}"
    );
    assert!(err.contains("data.levels=[]"), "{err}");
    let (ok, err) = run("all", &["data.levels=[]"]);
    assert!(ok, "{err}");
}
