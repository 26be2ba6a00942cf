"""Tumorscope's Streamlit app: ``streamlit run streamlit_app.py [-- --results DIR]``.

A thin entry point; the pages live in ``tumorscope.app`` (app/streamlit_main.py).
"""

from tumorscope.app.streamlit_main import main

main()
