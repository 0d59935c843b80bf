//! The identity graph: apps, persons, accounts and the account history.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// Creates `app`, `person`, `account`, `account_history` and the indexes of every read path.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(App::Table)
                    .col(big_pk_auto(App::Id))
                    .col(string_len_uniq(App::Appid, 128))
                    .col(string_len(App::Kind, 32))
                    .col(string(App::Name))
                    .col(text(App::SecretSealed))
                    .col(text_null(App::CallbackTokenSealed))
                    .col(text_null(App::AesKeySealed))
                    .col(text_null(App::AesKeyPreviousSealed))
                    .col(big_integer_null(App::FreshnessTtlSecs))
                    .col(timestamp_with_time_zone(App::CreatedAt))
                    .col(timestamp_with_time_zone(App::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Person::Table)
                    .col(big_pk_auto(Person::Id))
                    .col(string_len_uniq(Person::Unionid, 128))
                    .col(timestamp_with_time_zone(Person::CreatedAt))
                    .col(timestamp_with_time_zone(Person::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        // People "updated since" filter.
        manager
            .create_index(
                Index::create()
                    .name("idx_person_updated_at")
                    .table(Person::Table)
                    .col(Person::UpdatedAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Account::Table)
                    .col(big_pk_auto(Account::Id))
                    .col(big_integer(Account::AppId))
                    .col(string_len(Account::Openid, 128))
                    .col(big_integer_null(Account::PersonId))
                    .col(string_len_null(Account::Unionid, 128))
                    .col(string_len_null(Account::UnionidConflict, 128))
                    .col(timestamp_with_time_zone_null(Account::UnionidConflictAt))
                    .col(boolean_null(Account::Subscribed))
                    .col(timestamp_with_time_zone_null(Account::SubscribeTime))
                    .col(string_len_null(Account::SubscribeScene, 64))
                    .col(big_integer_null(Account::QrScene))
                    .col(string_null(Account::QrSceneStr))
                    .col(text_null(Account::Remark))
                    .col(json_null(Account::TagIds))
                    .col(text_null(Account::Nickname))
                    .col(string_len_null(Account::NicknameSource, 32))
                    .col(text_null(Account::AvatarUrl))
                    .col(string_len_null(Account::AvatarUrlSource, 32))
                    .col(integer_null(Account::Sex))
                    .col(string_len_null(Account::SexSource, 32))
                    .col(string_len_null(Account::Language, 32))
                    .col(string_len_null(Account::LanguageSource, 32))
                    .col(string_null(Account::City))
                    .col(string_len_null(Account::CitySource, 32))
                    .col(string_null(Account::Province))
                    .col(string_len_null(Account::ProvinceSource, 32))
                    .col(string_null(Account::Country))
                    .col(string_len_null(Account::CountrySource, 32))
                    .col(timestamp_with_time_zone_null(Account::RefreshedAt))
                    .col(integer_null(Account::RefreshErrorCode))
                    .col(text_null(Account::RefreshErrorMessage))
                    .col(timestamp_with_time_zone_null(Account::RefreshErrorAt))
                    .col(timestamp_with_time_zone(Account::CreatedAt))
                    .col(timestamp_with_time_zone(Account::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_account_app")
                            .from(Account::Table, Account::AppId)
                            .to(App::Table, App::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_account_person")
                            .from(Account::Table, Account::PersonId)
                            .to(Person::Table, Person::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        // Identity rule 1 and the lookup by (app, openid); also serves the
        // per-app keyset pages, which order by id within one app.
        manager
            .create_index(
                Index::create()
                    .name("uq_account_app_openid")
                    .table(Account::Table)
                    .col(Account::AppId)
                    .col(Account::Openid)
                    .unique()
                    .to_owned(),
            )
            .await?;
        for (name, cols) in [
            // Accounts of a person (nested `Person.accounts`).
            ("idx_account_person", vec![Account::PersonId]),
            // Per-app pages in id order.
            ("idx_account_app_id", vec![Account::AppId, Account::Id]),
            // Followers by app (people who follow a given app, stats).
            (
                "idx_account_app_subscribed",
                vec![Account::AppId, Account::Subscribed, Account::PersonId],
            ),
            // "updated since" within an app.
            (
                "idx_account_app_updated",
                vec![Account::AppId, Account::UpdatedAt],
            ),
        ] {
            let mut index = Index::create();
            index.name(name).table(Account::Table);
            for col in cols {
                index.col(col);
            }
            manager.create_index(index.to_owned()).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(AccountHistory::Table)
                    .col(big_pk_auto(AccountHistory::Id))
                    .col(big_integer(AccountHistory::AccountId))
                    .col(string_len(AccountHistory::Field, 64))
                    .col(text_null(AccountHistory::OldValue))
                    .col(text_null(AccountHistory::NewValue))
                    .col(string_len(AccountHistory::Source, 32))
                    .col(timestamp_with_time_zone(AccountHistory::ChangedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_account_history_account")
                            .from(AccountHistory::Table, AccountHistory::AccountId)
                            .to(Account::Table, Account::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_account_history_account")
                    .table(AccountHistory::Table)
                    .col(AccountHistory::AccountId)
                    .col(AccountHistory::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            AccountHistory::Table.into_iden(),
            Account::Table.into_iden(),
            Person::Table.into_iden(),
            App::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum App {
    Table,
    Id,
    Appid,
    Kind,
    Name,
    SecretSealed,
    CallbackTokenSealed,
    AesKeySealed,
    AesKeyPreviousSealed,
    FreshnessTtlSecs,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Person {
    Table,
    Id,
    Unionid,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Account {
    Table,
    Id,
    AppId,
    Openid,
    PersonId,
    Unionid,
    UnionidConflict,
    UnionidConflictAt,
    Subscribed,
    SubscribeTime,
    SubscribeScene,
    QrScene,
    QrSceneStr,
    Remark,
    TagIds,
    Nickname,
    NicknameSource,
    AvatarUrl,
    AvatarUrlSource,
    Sex,
    SexSource,
    Language,
    LanguageSource,
    City,
    CitySource,
    Province,
    ProvinceSource,
    Country,
    CountrySource,
    RefreshedAt,
    RefreshErrorCode,
    RefreshErrorMessage,
    RefreshErrorAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum AccountHistory {
    Table,
    Id,
    AccountId,
    Field,
    OldValue,
    NewValue,
    Source,
    ChangedAt,
}
