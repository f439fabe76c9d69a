use super::*;

fn compile(text: &str) -> Result<Workflow, InvalidWorkflow> {
    Workflow::compile(WorkflowDefinition::from_toml(text).unwrap())
}

fn error_of(text: &str) -> String {
    compile(text).unwrap_err().to_string()
}

const HEAD: &str = "name = \"w\"\nowner = \"person:ada\"\n";

#[test]
fn a_full_definition_compiles() {
    let workflow = compile(&format!(
        "{HEAD}deadline = \"2h\"\n\
         [[triggers]]\ncron = \"0 7 * * mon-fri\"\ntimezone = \"Europe/Berlin\"\ncatch_up = \"30m\"\n\
         [[triggers]]\nevery = \"15m\"\n\
         [[triggers]]\nat = \"2026-12-24T18:00:00+01:00\"\n\
         [[steps]]\nid = \"a\"\ntool = \"web_fetch.fetch\"\narguments = {{ url = \"https://example.org\" }}\n\
         [[steps]]\nid = \"b\"\nmodel = \"sum up {{{{ steps.a.output }}}}\"\nretries = 4\nbackoff = \"5s\"\n"
    ))
    .unwrap();
    assert_eq!(workflow.triggers().len(), 3);
    assert_eq!(workflow.deadline(), Some(Duration::from_secs(7200)));
    assert_eq!(workflow.triggers()[0].catch_up, Duration::from_secs(1800));
    assert_eq!(workflow.triggers()[1].catch_up, DEFAULT_CATCH_UP);
    assert_eq!(
        workflow.steps()[1].policy,
        StepPolicy {
            retries: 4,
            backoff: Duration::from_secs(5),
            timeout: Some(DEFAULT_TIMEOUT),
        }
    );
}

#[test]
fn errors_name_the_key() {
    let cases = [
        (
            "name = \"W!\"\nowner = \"person:ada\"\n[[steps]]\nid = \"a\"\nwait = \"1s\"\n",
            "name:",
        ),
        (
            &format!("{HEAD}[[steps]]\nid = \"a\"\nwait = \"soon\"\n"),
            "steps[0].wait: not a duration",
        ),
        (
            &format!("{HEAD}[[steps]]\nid = \"a\"\nwait = \"1s\"\ntool = \"x.y\"\n"),
            "steps[0]: a step needs exactly one",
        ),
        (
            &format!(
                "{HEAD}[[steps]]\nid = \"a\"\nwait = \"1s\"\n[[steps]]\nid = \"a\"\nwait = \"1s\"\n"
            ),
            "steps[1].id: `a` is used",
        ),
        (
            &format!(
                "{HEAD}[[steps]]\nid = \"a\"\nmodel = \"{{{{ steps.b.output }}}}\"\n[[steps]]\nid = \"b\"\nwait = \"1s\"\n"
            ),
            "steps[0].model: reads step `b`",
        ),
        (
            &format!("{HEAD}[[steps]]\nid = \"a\"\nsend = \"hi\"\nto = \"nobody\"\n"),
            "steps[0].to: must be",
        ),
        (
            &format!("{HEAD}[[steps]]\nid = \"a\"\nwait = \"1s\"\nto = \"web:ada\"\n"),
            "steps[0].to: is not allowed",
        ),
        (
            &format!(
                "{HEAD}[[triggers]]\ncron = \"0 7 * *\"\n[[steps]]\nid = \"a\"\nwait = \"1s\"\n"
            ),
            "triggers[0].cron: not a cron pattern",
        ),
        (
            &format!(
                "{HEAD}[[triggers]]\ncron = \"0 7 * * *\"\ntimezone = \"Nowhere/City\"\n[[steps]]\nid = \"a\"\nwait = \"1s\"\n"
            ),
            "triggers[0].cron: unknown time zone",
        ),
        (
            &format!(
                "{HEAD}[[triggers]]\nevery = \"1m\"\nat = \"2026-01-01T00:00:00Z\"\n[[steps]]\nid = \"a\"\nwait = \"1s\"\n"
            ),
            "triggers[0]: a trigger needs exactly one",
        ),
        (
            &format!(
                "{HEAD}[[steps]]\nid = \"p\"\nfirst = 3\n[[steps.branches]]\nsteps = [{{ id = \"x\", wait = \"1s\" }}]\n"
            ),
            "steps[0].first",
        ),
        (
            &format!(
                "{HEAD}[[steps]]\nid = \"p\"\n[[steps.branches]]\nsteps = [{{ id = \"x\", wait = \"1s\" }}]\n[[steps.branches]]\nsteps = [{{ id = \"y\", model = \"{{{{ steps.x.output }}}}\" }}]\n"
            ),
            "steps[0].branches[1].steps[0].model: reads step `x`",
        ),
        (
            &format!("{HEAD}steps = []\n"),
            "steps: needs at least one step",
        ),
        (
            "name = \"w\"\nowner = \"ada\"\n[[steps]]\nid = \"a\"\nwait = \"1s\"\n",
            "owner:",
        ),
        (
            &format!(
                "{HEAD}[[triggers]]\nwebhook_secret_env = \"lower\"\n[[steps]]\nid = \"a\"\nwait = \"1s\"\n"
            ),
            "triggers[0].webhook_secret_env: must name",
        ),
        (
            &format!("{HEAD}[[triggers]]\nmessage = \"(\"\n[[steps]]\nid = \"a\"\nwait = \"1s\"\n"),
            "triggers[0].message: not a regular expression",
        ),
        (
            &format!(
                "{HEAD}[[triggers]]\nmessage = \"hi\"\ncatch_up = \"1h\"\n[[steps]]\nid = \"a\"\nwait = \"1s\"\n"
            ),
            "triggers[0].catch_up: is not allowed",
        ),
        (
            &format!(
                "{HEAD}[[triggers]]\nevery = \"1h\"\nplatform = \"api\"\n[[steps]]\nid = \"a\"\nwait = \"1s\"\n"
            ),
            "triggers[0].platform: is not allowed",
        ),
    ];
    for (text, expected) in cases {
        let error = error_of(text);
        assert!(
            error.starts_with(expected),
            "{error} does not start with {expected}"
        );
    }
}

#[test]
fn unknown_keys_are_refused_by_name() {
    let error =
        WorkflowDefinition::from_toml(&format!("{HEAD}[[steps]]\nid = \"a\"\nwiat = \"1s\"\n"))
            .unwrap_err()
            .to_string();
    assert!(error.contains("unknown field `wiat`"), "{error}");
}

#[test]
fn too_many_steps_are_refused() {
    let steps: String = (0..=MAX_DEFINED_STEPS)
        .map(|index| format!("[[steps]]\nid = \"s{index}\"\nwait = \"1s\"\n"))
        .collect();
    assert!(error_of(&format!("{HEAD}{steps}")).contains("more than 200 steps"));
}

#[test]
fn nesting_past_the_limit_is_refused() {
    let mut inner = "{ id = \"leaf\", wait = \"1s\" }".to_owned();
    for level in 0..=MAX_NESTING {
        inner = format!("{{ id = \"c{level}\", if = \"x\", then = [{inner}] }}");
    }
    let text = format!("{HEAD}steps = [{inner}]\n");
    assert!(
        error_of(&text).contains("nests deeper"),
        "{}",
        error_of(&text)
    );
}
