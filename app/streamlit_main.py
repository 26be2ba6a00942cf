"""The Streamlit app's frame: session state, results folder, run and patient pickers, pages.

``streamlit run streamlit_app.py [-- --results DIR]`` calls :func:`main` on every rerun.
The results folder comes from the sidebar field, initialised from ``--results DIR``, else
``$TUMORSCOPE_RESULTS``, else ``runs/`` (where ``tumorscope demo`` writes ``runs/demo``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import streamlit as st

from tumorscope.app import results, state, tables
from tumorscope.app.pages import overview, patient, slices
from tumorscope.app.state import Context
from tumorscope.core.errors import TumorscopeError

log = logging.getLogger(__name__)

PAGE_TITLES = {"overview": "Cohort overview", "patient": "Patient 3D", "slices": "Slice viewer"}
PAGE_ICONS = {"overview": ":material/table_chart:", "patient": ":material/view_in_ar:",
              "slices": ":material/layers:"}


def _sidebar(ctx: Context) -> None:
    with st.sidebar:
        st.text_input(
            "Results folder", key="results_dir",
            help="A run folder, or a folder of runs. Also settable with "
                 "`streamlit run streamlit_app.py -- --results DIR` or $TUMORSCOPE_RESULTS.")
        ctx.results = results.find_results(st.session_state["results_dir"])
        if not ctx.results.runs:
            return
        names = [r.name for r in ctx.results.runs]
        if st.session_state.get("run_name") not in names:
            st.session_state["run_name"] = names[0]
        if len(names) > 1:
            st.selectbox("Run", names, key="run_name")
        else:
            st.caption(f"Run: **{names[0]}**")
        ctx.run = ctx.results.run(st.session_state["run_name"])
        assert ctx.run is not None  # names is not empty
        ids = ctx.run.case_ids()
        if not ids:
            return
        if st.session_state.get("case_id") not in ids:
            st.session_state["case_id"] = ids[0]
        cases = tables.run_cases(ctx.run)
        st.selectbox("Patient", ids, key="case_id",
                     format_func=lambda c: c if c in cases and cases[c].label is not None
                     else f"{c} (no ground truth)")
        ctx.case_id = st.session_state["case_id"]


def guarded(render: Callable[[Context], None], ctx: Context, *,
            needs_case: bool) -> Callable[[], None]:
    """A page that shows a missing/broken results folder or a bad file as one clear line."""

    def page() -> None:
        problem = ctx.results.problem or ctx.problem
        if problem:
            st.title("Tumorscope")
            st.error(problem, icon=":material/folder_off:")
            if ctx.results.root == results.DEFAULT_RESULTS:
                st.code(results.BUILD_COMMAND, language="bash")
            return
        if needs_case and ctx.case_id is None:
            st.title(PAGE_TITLES["patient"])
            st.warning(f"Run `{ctx.run.name if ctx.run else '?'}` has no predictions yet: "
                       "make them with `tumorscope predict --checkpoint RUN/checkpoints/best.pt "
                       "--input DATA --out RUN`.")
            return
        try:
            render(ctx)
        except TumorscopeError as exc:
            st.error(f"Cannot show this page: {exc}", icon=":material/report:")
        except Exception as exc:  # the page's edge: a person sees one line, the log the rest
            log.exception("page failed")
            st.error(f"Cannot show this page ({type(exc).__name__}): {exc}",
                     icon=":material/report:")

    return page


def main() -> None:
    """Draw the app for one rerun."""
    st.set_page_config(page_title="Tumorscope", page_icon=":material/neurology:",
                       layout="wide")
    state.init_state()
    ctx = Context(results=results.Results(results.DEFAULT_RESULTS))
    try:
        _sidebar(ctx)
    except TumorscopeError as exc:  # e.g. a damaged cases.json: say so on the page
        ctx.problem = f"Cannot read this run: {exc}"
    renderers = {"overview": (overview.render, False), "patient": (patient.render, True),
                 "slices": (slices.render, True)}
    ctx.pages = {
        name: st.Page(guarded(fn, ctx, needs_case=needs), title=PAGE_TITLES[name],
                      icon=PAGE_ICONS[name], url_path=name, default=name == "overview")
        for name, (fn, needs) in renderers.items()}
    navigation = st.navigation(list(ctx.pages.values()))
    goto = state.take_page_request()
    if goto in ctx.pages:
        ctx.open(goto)
    navigation.run()
