from tortoise import migrations
from tortoise.migrations import operations as ops
from taskdash.core.clock import utcnow
from taskdash.core.models import ActorKind, Role
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('taskdash', '0002_schedule_slots')]

    initial = False

    operations = [
        ops.CreateModel(
            name='User',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('name', fields.CharField(unique=True, max_length=64)),
                ('password_hash', fields.CharField(max_length=255)),
                ('role', fields.CharEnumField(default=Role.VIEWER, description='VIEWER: viewer\nOPERATOR: operator\nADMIN: admin', enum_type=Role, max_length=16)),
                ('created_at', fields.DatetimeField(default=utcnow, auto_now=False, auto_now_add=False)),
                ('updated_at', fields.DatetimeField(default=utcnow, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'account', 'app': 'taskdash', 'pk_attr': 'id', 'table_description': 'A person who logs in to the dashboard.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ApiToken',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('name', fields.CharField(unique=True, max_length=64)),
                ('user', fields.ForeignKeyField('taskdash.User', source_field='user_id', null=True, db_constraint=True, to_field='id', related_name='tokens', on_delete=OnDelete.CASCADE)),
                ('role', fields.CharEnumField(default=Role.VIEWER, description='VIEWER: viewer\nOPERATOR: operator\nADMIN: admin', enum_type=Role, max_length=16)),
                ('secret_hash', fields.CharField(unique=True, max_length=64)),
                ('hint', fields.CharField(max_length=16)),
                ('created_at', fields.DatetimeField(default=utcnow, auto_now=False, auto_now_add=False)),
                ('last_used_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('revoked_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'api_token', 'app': 'taskdash', 'pk_attr': 'id', 'table_description': 'A bearer token for the API: only the SHA-256 of its secret is stored.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='UserSession',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('user', fields.ForeignKeyField('taskdash.User', source_field='user_id', db_constraint=True, to_field='id', related_name='sessions', on_delete=OnDelete.CASCADE)),
                ('secret_hash', fields.CharField(unique=True, max_length=64)),
                ('csrf_token', fields.CharField(max_length=64)),
                ('created_at', fields.DatetimeField(default=utcnow, auto_now=False, auto_now_add=False)),
                ('expires_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'user_session', 'app': 'taskdash', 'pk_attr': 'id', 'table_description': 'A dashboard login: the cookie carries its secret, whose SHA-256 is stored here.'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Run',
            name='started_by_kind',
            field=fields.CharEnumField(default=ActorKind.ANONYMOUS, db_default=ActorKind.ANONYMOUS.value, description='USER: user\nTOKEN: token\nSCHEDULE: schedule\nANONYMOUS: anonymous', enum_type=ActorKind, max_length=16),
        ),
        ops.AddField(
            model_name='Run',
            name='started_by_name',
            field=fields.CharField(default='', db_default='', max_length=64),
        ),
        ops.AddField(
            model_name='Task',
            name='secret_env',
            field=fields.BinaryField(null=True),
        ),
    ]
