# Alembic configuration for the sa_llm models in ${module_file}, written by `sa-llm install`.
# Yours to edit: sa-llm never overwrites it. Migrate with `alembic upgrade head`.

[alembic]
# The environment: env.py, script.py.mako and versions/.
script_location = ${script_location}

# Prepended to sys.path so env.py can import the models module.
prepend_sys_path = ${prepend_sys_path}
path_separator = os

# Revision file names; see Alembic's docs for the other tokens (dates, epoch).
# file_template = %%(rev)s_%%(slug)s

# The database to migrate when neither SA_LLM_DATABASE_URL nor DATABASE_URL is set
# (env.py reads those first, so credentials need not live in this file).
sqlalchemy.url = ${database_url}


[post_write_hooks]
# Format or lint new revision files, e.g. with ruff:
# hooks = ruff
# ruff.type = module
# ruff.module = ruff
# ruff.options = check --fix REVISION_SCRIPT_FILENAME


[loggers]
keys = root,sqlalchemy,alembic

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARNING
handlers = console
qualname =

[logger_sqlalchemy]
level = WARNING
handlers =
qualname = sqlalchemy.engine

[logger_alembic]
level = INFO
handlers =
qualname = alembic

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(levelname)-5.5s [%(name)s] %(message)s
datefmt = %H:%M:%S
