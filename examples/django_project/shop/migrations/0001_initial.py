from __future__ import annotations

from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies: list[tuple[str, str]] = []  # noqa: RUF012 - Django's migration format

    operations = [  # noqa: RUF012 - Django's migration format
        migrations.CreateModel(
            name="Product",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("sku", models.SlugField(max_length=64, unique=True)),
                ("name", models.CharField(max_length=200)),
                ("stock", models.PositiveIntegerField(default=0)),
            ],
            options={"ordering": ("sku",)},
        ),
    ]
