"""chattune: fine-tune chat LLMs on exactly the tokens they should learn, and watch them while they train.

The flow, one module each: config → data → chat_template/masking → cache → train → monitor → report.
"""

__version__ = "0.1.0"
