from flexlearn.cli import app

app(prog_name="flex")
