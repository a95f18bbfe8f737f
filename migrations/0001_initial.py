from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from taskdash.core.clock import utcnow
from taskdash.core.models import OverlapPolicy, RunStatus, ScriptType, Trigger
from tortoise.fields.base import OnDelete
from uuid import uuid4
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name='Task',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('name', fields.CharField(max_length=200)),
                ('script_type', fields.CharEnumField(description='PYTHON: python\nSHELL: shell', enum_type=ScriptType, max_length=16)),
                ('script', fields.BinaryField(null=True)),
                ('script_filename', fields.CharField(default='', max_length=255)),
                ('requirements', fields.TextField(null=True, unique=False)),
                ('image', fields.CharField(null=True, max_length=255)),
                ('env', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('timeout_seconds', fields.FloatField(null=True)),
                ('memory_mb', fields.IntField(null=True)),
                ('cpus', fields.FloatField(null=True)),
                ('last_run_id', fields.UUIDField(null=True)),
                ('created_at', fields.DatetimeField(default=utcnow, db_index=True, auto_now=False, auto_now_add=False)),
                ('updated_at', fields.DatetimeField(default=utcnow, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'task', 'app': 'taskdash', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Run',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('task', fields.ForeignKeyField('taskdash.Task', source_field='task_id', db_constraint=True, to_field='id', related_name='runs', on_delete=OnDelete.CASCADE)),
                ('status', fields.CharEnumField(default=RunStatus.QUEUED, description='QUEUED: queued\nRUNNING: running\nSUCCEEDED: succeeded\nFAILED: failed\nSTOPPED: stopped\nTIMED_OUT: timed_out\nERROR: error', enum_type=RunStatus, max_length=16)),
                ('trigger', fields.CharEnumField(default=Trigger.API, description='API: api\nDASHBOARD: dashboard\nSCHEDULE: schedule', enum_type=Trigger, max_length=16)),
                ('container_id', fields.CharField(null=True, max_length=64)),
                ('image', fields.CharField(default='', max_length=255)),
                ('exit_code', fields.IntField(null=True)),
                ('queued_at', fields.DatetimeField(default=utcnow, auto_now=False, auto_now_add=False)),
                ('started_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('finished_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('error', fields.TextField(null=True, unique=False)),
                ('log_bytes', fields.BigIntField(default=0)),
                ('log_lines', fields.IntField(default=0)),
                ('log_truncated', fields.BooleanField(default=False)),
                ('docker_info', fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('scheduled_for', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('catch_up', fields.BooleanField(default=False)),
            ],
            options={'table': 'run', 'app': 'taskdash', 'indexes': [Index(fields=['task_id', 'queued_at']), Index(fields=['status'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Schedule',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('task', fields.OneToOneField('taskdash.Task', source_field='task_id', db_constraint=True, to_field='id', related_name='schedule', on_delete=OnDelete.CASCADE)),
                ('cron_expression', fields.CharField(max_length=200)),
                ('timezone', fields.CharField(default='UTC', max_length=64)),
                ('enabled', fields.BooleanField(default=True)),
                ('overlap', fields.CharEnumField(default=OverlapPolicy.SKIP, description='SKIP: skip\nQUEUE: queue\nALLOW: allow', enum_type=OverlapPolicy, max_length=8)),
                ('next_run_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('last_run_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(default=utcnow, auto_now=False, auto_now_add=False)),
                ('updated_at', fields.DatetimeField(default=utcnow, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'schedule', 'app': 'taskdash', 'pk_attr': 'id'},
            bases=['Model'],
        ),
    ]
