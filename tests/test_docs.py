"""The documentation stays true to the tree: links resolve, and docs/math.md, the MATH
citations in the code and the tests they name agree.

- every relative link (and image) in README.md, benchmarks/README.md and docs/*.md points to an
  existing file or folder, and a `#fragment` into a Markdown file names one of its headings;
- every ID of the math sheet (F1..F13, A1..A11, E1..E7) has exactly one entry in docs/math.md,
  with a display formula, a Code line and a Tested line;
- every `MATH <ID>` cited in the code names an ID that docs/math.md defines, and an ID the code
  cites is linked to code there (not left as "not implemented yet");
- every file that an entry's Code line links to cites that entry's ID, so moving an
  implementation without its citation (or the page) fails here;
- every test function an entry's Tested line names exists in a file linked on that line.
"""
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
MATH_PAGE = ROOT / "docs" / "math.md"

# The IDs of the math sheet (formulas, algorithms, worked examples), in order.
IDS = ([f"F{i}" for i in range(1, 14)] + [f"A{i}" for i in range(1, 12)]
       + [f"E{i}" for i in range(1, 8)])

# Where the code that cites MATH IDs lives (tests cite them too).
CODE_DIRS = ("engine", "collectives", "strategies", "tutorials", "benchmarks", "tests")

LINK = re.compile(r"!?\[([^\]]*)\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
CITATION = re.compile(r"\bMATH\s+([FAE]\d+(?:\s*(?:,|/|-|–|\band\b)\s*[FAE]\d+)*)")
ENTRY = re.compile(r"^### ([FAE]\d+) — .+$", flags=re.M)


def doc_files():
    return [ROOT / "README.md", ROOT / "benchmarks" / "README.md",
            *sorted((ROOT / "docs").glob("*.md"))]


def without_code_blocks(text):
    """The Markdown text with fenced code blocks blanked (their lines kept, so line numbers hold)."""
    return re.sub(r"^```.*?^```", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.M | re.S)


def links(text):
    """(line number, target) of every Markdown link and image outside code blocks."""
    found = []
    for number, line in enumerate(without_code_blocks(text).splitlines(), start=1):
        found += [(number, m.group(2)) for m in LINK.finditer(line)]
    return found


def is_relative(target):
    return not re.match(r"^[a-z][a-z0-9+.-]*:", target, flags=re.I)  # http:, https:, mailto: ...


def github_slug(heading):
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(markdown_file):
    text = without_code_blocks(markdown_file.read_text())
    return {github_slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, flags=re.M)}


def cited_ids(text):
    """Every ID named by a `MATH ...` citation in text ("MATH F1, F2", "MATH E1/E3/E4", "MATH F1-F3")."""
    ids = set()
    for match in CITATION.finditer(text):
        group = match.group(1)
        for first, last in re.findall(r"([FAE]\d+)\s*[-–]\s*([FAE]\d+)", group):
            if first[0] == last[0]:
                ids |= {f"{first[0]}{i}" for i in range(int(first[1:]), int(last[1:]) + 1)}
        ids |= set(re.findall(r"[FAE]\d+", group))
    return ids


def code_files():
    for folder in CODE_DIRS:
        for path in sorted((ROOT / folder).rglob("*")):
            if (path.suffix in (".py", ".ipynb") and path.name != "test_docs.py"
                    and ".ipynb_checkpoints" not in path.parts and "__pycache__" not in path.parts):
                yield path


def math_entries():
    """{ID: the text of its entry in docs/math.md}."""
    text = MATH_PAGE.read_text()
    heads = list(ENTRY.finditer(text))
    entries = {}
    for head, following in zip(heads, heads[1:] + [None]):
        end = following.start() if following else len(text)
        body = text[head.end():end].split("\n## ", 1)[0]
        assert head.group(1) not in entries, f"docs/math.md: {head.group(1)} has two entries"
        entries[head.group(1)] = body
    return entries


def entry_line(body, label):
    lines = [line for line in body.splitlines() if line.startswith(f"- {label}:")]
    assert len(lines) == 1, f"expected one '- {label}:' line, found {len(lines)}"
    return lines[0]


def linked_files(line):
    """The files a docs/math.md line links to, resolved from docs/."""
    return [(target, (MATH_PAGE.parent / target.split("#", 1)[0]).resolve())
            for _, target in links(line) if is_relative(target) and not target.startswith("#")]


# ---------------------------------------------------------------- links


@pytest.mark.parametrize("doc", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_to_an_existing_file(doc):
    assert doc.is_file(), f"{doc.relative_to(ROOT)} is missing"
    broken = []
    for number, target in links(doc.read_text()):
        if not is_relative(target):
            continue
        path_part, _, fragment = target.partition("#")
        path = (doc.parent / path_part).resolve() if path_part else doc
        if not path.exists():
            broken.append(f"{doc.relative_to(ROOT)}:{number}: {target} (no such file)")
        elif fragment and path.suffix == ".md" and fragment not in anchors(path):
            broken.append(f"{doc.relative_to(ROOT)}:{number}: {target} (no heading #{fragment})")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_readme_links_every_docs_page_and_the_benchmarks_page():
    readme_targets = {target.split("#", 1)[0] for _, target in links((ROOT / "README.md").read_text())}
    pages = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")} | {"benchmarks/README.md"}
    assert pages <= readme_targets, f"README.md does not link {sorted(pages - readme_targets)}"


def test_the_link_checker_catches_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("[ok](page.md) [gone](missing.md) `[code](nowhere.md)`\n\n```\n[x](y.md)\n```\n")
    targets = [target for _, target in links(page.read_text())]
    assert "missing.md" in targets and "y.md" not in targets
    assert not (page.parent / "missing.md").exists()


# ---------------------------------------------------------------- docs/math.md and the code


def test_math_page_has_exactly_one_entry_per_id_in_order():
    entries = list(math_entries())
    assert entries == IDS, f"docs/math.md entries {entries} differ from {IDS}"


@pytest.mark.parametrize("math_id", IDS)
def test_math_entry_has_a_formula_a_code_line_and_a_tested_line(math_id):
    body = math_entries()[math_id]
    assert re.search(r"^\$\$\n.+?\n\$\$$", body, flags=re.M | re.S), f"{math_id}: no $$ display formula"
    code = entry_line(body, "Code")
    entry_line(body, "Tested")
    if not linked_files(code):
        assert re.search(r"not implemented yet|not cited in the code yet", code), \
            f"{math_id}: a Code line without links must say why: {code!r}"


def test_every_math_citation_in_the_code_names_an_id_the_math_page_defines():
    defined = set(math_entries())
    unknown = {}
    for path in code_files():
        for math_id in cited_ids(path.read_text(errors="replace")) - defined:
            unknown.setdefault(math_id, []).append(str(path.relative_to(ROOT)))
    assert not unknown, f"MATH IDs cited in the code but not defined in docs/math.md: {unknown}"


def test_citations_are_found_in_each_code_folder():
    """Guards the scan itself: if the citation pattern stopped matching, the tests above would pass empty."""
    for folder in ("engine", "collectives", "strategies", "tutorials"):
        found = set().union(*(cited_ids(p.read_text(errors="replace")) for p in code_files()
                              if p.relative_to(ROOT).parts[0] == folder))
        assert found, f"no MATH citation found under {folder}/"
    assert cited_ids("MATH F1-F3, E5 and A6; MATH E1/E3/E4") == {"F1", "F2", "F3", "E5", "A6", "E1", "E3", "E4"}


def test_an_id_the_code_cites_is_linked_to_code_on_the_math_page():
    entries = math_entries()
    cited = {}
    for path in code_files():
        if path.relative_to(ROOT).parts[0] != "tests":
            for math_id in cited_ids(path.read_text(errors="replace")):
                cited.setdefault(math_id, []).append(str(path.relative_to(ROOT)))
    unlinked = {math_id: files for math_id, files in cited.items()
                if math_id in entries and not linked_files(entry_line(entries[math_id], "Code"))}
    assert not unlinked, f"cited in the code but docs/math.md links no code for them: {unlinked}"


@pytest.mark.parametrize("math_id", IDS)
def test_every_file_linked_as_code_cites_the_id(math_id):
    for target, path in linked_files(entry_line(math_entries()[math_id], "Code")):
        assert path.is_file(), f"{math_id}: {target} does not exist"
        assert math_id in cited_ids(path.read_text(errors="replace")), \
            f"docs/math.md links {math_id} to {target}, which does not cite 'MATH {math_id}'"


@pytest.mark.parametrize("math_id", IDS)
def test_every_test_named_for_an_id_exists(math_id):
    line = entry_line(math_entries()[math_id], "Tested")
    files = linked_files(line)
    for target, path in files:
        assert path.is_file(), f"{math_id}: {target} does not exist"
    sources = "\n".join(path.read_text() for _, path in files)
    for name in re.findall(r"`(test_\w+)`", line):
        assert re.search(rf"^\s*def {name}\(", sources, flags=re.M), \
            f"{math_id}: {name} is not defined in {[t for t, _ in files]}"
    if files:
        assert re.findall(r"`(test_\w+)`", line), f"{math_id}: the Tested line names no test function"
    else:
        assert "not yet" in line, f"{math_id}: a Tested line without links must say 'not yet'"


# ---------------------------------------------------------------- facts the README states


def test_readme_stays_short_and_keeps_its_sections():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    for section in ("## Quick start", "## Who are you?", "## Map of the tree", "## Documentation"):
        assert section in readme, f"README.md lost its {section!r} section"
    assert "**Status.**" in readme


def tree_map():
    """{top-level folder: [the names listed under it]} from the README's map of the tree."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Map of the tree", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    tree = {}
    for line in block.splitlines():
        if line.strip():
            name = line.split()[0]
            if line.startswith(" "):
                tree[top].append(name)
            else:
                top = name
                tree[top] = []
    return tree


def tracked_files(folder):
    """The files git tracks under folder (the committed tree); every file there without git."""
    import subprocess
    try:
        listed = subprocess.run(["git", "ls-files", folder], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        listed = []
    if not listed:
        return [p.relative_to(ROOT) for p in (ROOT / folder).rglob("*") if p.is_file()]
    return [pathlib.Path(p) for p in listed]


def test_the_map_of_the_tree_names_only_files_and_folders_that_exist():
    for top, children in tree_map().items():
        assert (ROOT / top).is_dir(), f"README map: {top} is not a folder"
        for name in children:
            assert (ROOT / top / name).exists(), f"README map: {top}{name} does not exist"


def test_every_committed_module_of_the_core_packages_is_in_the_map():
    tree = tree_map()
    missing = []
    for package in ("engine", "collectives", "strategies"):
        listed = set(tree[f"{package}/"])
        for path in tracked_files(package):
            first = path.parts[1]
            if first.startswith(("_", ".")):
                continue                                # __init__.py, __pycache__/
            if len(path.parts) > 2:
                name = first + "/"                      # a subpackage: one line for the folder
            elif path.suffix == ".py":
                name = first
            else:
                continue
            if name not in listed:
                missing.append(f"{package}/{name}")
    assert not missing, f"modules missing from the README's map of the tree: {sorted(set(missing))}"


def test_each_tutorial_command_in_the_readme_is_the_launch_line_in_its_header():
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Tutorials", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^\| \d\d \| `([^`]+)` \|", table, flags=re.M)
    assert len(commands) == len(list((ROOT / "tutorials").glob("[0-9][0-9]_*.py"))), commands
    for command in commands:
        script = re.search(r"tutorials/\S+\.py", command).group(0)
        header = (ROOT / script).read_text().split('"""', 2)[1]
        assert command in header, f"{script}'s header does not show {command!r}"


def test_the_runner_flags_on_the_strategies_page_exist():
    page = (ROOT / "docs" / "strategies.md").read_text()
    runner = page.split("## The runner", 1)[1].split("\n## ", 1)[0]
    flags = set(re.findall(r"`(--[a-z][a-z-]*)", runner))
    source = "\n".join(p.read_text() for p in (ROOT / "strategies").rglob("*.py"))
    assert len(flags) > 15, flags
    missing = sorted(flag for flag in flags if f'"{flag}"' not in source)
    assert not missing, f"docs/strategies.md lists runner flags the code does not define: {missing}"
