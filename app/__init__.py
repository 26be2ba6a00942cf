"""Tumorscope app: the command line and the Streamlit pages."""
