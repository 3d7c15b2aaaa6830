"""Lab2Market dashboard: the router. Pages in pages/, shared pieces in ui/, the engine in core/.

Run it with ``streamlit run app.py`` (binds 127.0.0.1; see .streamlit/config.toml). How a page
gets the shared sidebar, also when Streamlit runs it alone, is explained in ``ui/router.py``.
"""

import streamlit as st

st.set_page_config(page_title="Lab2Market", page_icon=":material/rocket_launch:", layout="wide")

pages = {
    "Start": [st.Page("pages/home.py", title="Home", icon=":material/home:", default=True)],
    "Data": [st.Page("pages/data.py", title="Data", icon=":material/dataset:")],
    "Train": [st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
              st.Page("pages/tune.py", title="Tune", icon=":material/tune:")],
    "Analyze": [
        st.Page("pages/evaluate.py", title="Evaluate", icon=":material/analytics:"),
        st.Page("pages/predict.py", title="Predict", icon=":material/online_prediction:"),
        st.Page("pages/explain.py", title="Explain", icon=":material/psychology:"),
        st.Page("pages/ensemble.py", title="Ensemble", icon=":material/hub:"),
    ],
    "Ship": [st.Page("pages/compress.py", title="Compress", icon=":material/compress:"),
             st.Page("pages/deploy.py", title="Deploy", icon=":material/cloud_upload:")],
}
page = st.navigation(pages)  # before the app's imports: until it runs, a first visit's sidebar
# lists the raw file names of pages/ (Streamlit's legacy mode, see ui/router.py)
from ui.router import enter_app, run_page  # noqa: E402

enter_app()
run_page(page)
