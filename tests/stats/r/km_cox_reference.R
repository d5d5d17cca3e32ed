# Reference values for tests/stats/test_km*.py and test_cox*.py (R survival >= 3).
# Run from the repository root:  Rscript tests/stats/r/km_cox_reference.R
# Reads the CSV copies in tests/stats/data so R and Python see identical numbers.
suppressMessages({library(survival); library(jsonlite)})
rd <- function(name) read.csv(file.path("tests/stats/data", paste0(name, ".csv")))
lung <- rd("lung"); veteran <- rd("veteran"); colon <- rd("colon"); pbc <- rd("pbc")
ovarian <- rd("ovarian")
out <- list(survival_version = as.character(packageVersion("survival")))

km_ref <- function(fit, times) {
  s <- summary(fit, times = times, extend = FALSE)
  tab <- summary(fit)$table
  if (is.null(dim(tab))) tab <- t(as.matrix(tab))
  list(time = fit$time, surv = fit$surv, std_err = fit$std.err, lower = fit$lower,
       upper = fit$upper, n_risk = fit$n.risk, strata = if (is.null(fit$strata)) NULL else as.vector(fit$strata),
       median = unname(tab[, "median"]), median_lower = unname(tab[, "0.95LCL"]),
       median_upper = unname(tab[, "0.95UCL"]), at_time = s$time, at_surv = s$surv,
       at_lower = s$lower, at_upper = s$upper, at_risk = s$n.risk,
       at_strata = if (is.null(s$strata)) NULL else as.character(s$strata))
}
out$km_lung_sex <- km_ref(survfit(Surv(time, status) ~ sex, data = lung), c(0, 100, 365, 500, 730))
out$km_lung_all <- km_ref(survfit(Surv(time, status) ~ 1, data = lung), c(180, 365))
out$km_lung_loglog <- km_ref(survfit(Surv(time, status) ~ 1, data = lung, conf.type = "log-log"), c(180, 365))
out$km_lung_plain <- km_ref(survfit(Surv(time, status) ~ 1, data = lung, conf.type = "plain"), c(180, 365))
out$km_veteran_celltype <- km_ref(survfit(Surv(time, status) ~ celltype, data = veteran), c(30, 90, 180))
out$km_ovarian_rx <- km_ref(survfit(Surv(futime, fustat) ~ rx, data = ovarian), c(200, 400, 800))
q <- quantile(survfit(Surv(time, status) ~ sex, data = lung), c(0.25, 0.75))
out$quantile_lung_sex <- list(q = unname(q$quantile), lower = unname(q$lower), upper = unname(q$upper))
# an exact 0.5 plateau: median is the midpoint (R's print.survfit rule)
half <- data.frame(time = c(1, 2, 3, 4, 5, 6), status = c(1, 1, 1, 0, 1, 1))
out$km_half <- km_ref(survfit(Surv(time, status) ~ 1, data = half), c(2))

sd_ref <- function(sd) list(chisq = sd$chisq, df = length(sd$n) - 1, obs = as.vector(sd$obs),
                            exp = as.vector(sd$exp), var = as.vector(sd$var),
                            p = pchisq(sd$chisq, length(sd$n) - 1, lower.tail = FALSE))
out$logrank_lung_sex <- sd_ref(survdiff(Surv(time, status) ~ sex, data = lung))
out$logrank_veteran_celltype <- sd_ref(survdiff(Surv(time, status) ~ celltype, data = veteran))
out$logrank_veteran_celltype_strat <- sd_ref(survdiff(Surv(time, status) ~ celltype + strata(trt), data = veteran))
out$logrank_colon_rx_strat <- sd_ref(survdiff(Surv(time, status) ~ rx + strata(etype), data = colon))
out$logrank_lung_ecog_rho1 <- sd_ref(survdiff(Surv(time, status) ~ ph.ecog, data = lung, rho = 1))
# trend test across ordered ph.ecog (0,1,2,3) with scores 0..3 and 1..k
sd <- survdiff(Surv(time, status) ~ ph.ecog, data = lung)
trend <- function(sd, w) { u <- sum(w * (sd$obs - sd$exp)); v <- drop(t(w) %*% sd$var %*% w)
  list(chisq = u^2 / v, p = pchisq(u^2 / v, 1, lower.tail = FALSE)) }
out$trend_lung_ecog <- trend(sd, 1:4)
out$trend_lung_ecog_scores0 <- trend(sd, c(0, 1, 2, 3))
# pairwise log-rank with Holm adjustment over celltype
lv <- sort(unique(veteran$celltype)); pr <- list(); pv <- c()
for (i in 1:(length(lv) - 1)) for (j in (i + 1):length(lv)) {
  sub <- veteran[veteran$celltype %in% c(lv[i], lv[j]), ]
  s <- survdiff(Surv(time, status) ~ celltype, data = sub)
  pv <- c(pv, pchisq(s$chisq, 1, lower.tail = FALSE)); pr[[length(pr) + 1]] <- c(lv[i], lv[j])
}
out$pairwise_veteran <- list(pairs = pr, p = pv, p_holm = p.adjust(pv, "holm"))

cox_ref <- function(fit) {
  s <- summary(fit)
  r <- list(coef = unname(coef(fit)), se = unname(sqrt(diag(fit$var))), names = names(coef(fit)),
            loglik = fit$loglik, wald = unname(fit$wald.test), lr = unname(s$logtest["test"]),
            score = unname(fit$score), concordance = unname(fit$concordance["concordance"]),
            n = fit$n, nevent = fit$nevent)
  if (!is.null(fit$naive.var)) { r$naive_se <- unname(sqrt(diag(fit$naive.var)))
    r$robust_score <- unname(fit$rscore) }
  z <- cox.zph(fit)
  r$zph <- list(terms = rownames(z$table), chisq = unname(z$table[, "chisq"]),
                df = unname(z$table[, "df"]), p = unname(z$table[, "p"]))
  r
}
lungc <- na.omit(lung[, c("time", "status", "age", "sex", "ph.ecog", "ph.karno", "wt.loss", "inst")])
out$cox_lung_efron <- cox_ref(coxph(Surv(time, status) ~ age + sex + ph.ecog, data = lungc))
out$cox_lung_breslow <- cox_ref(coxph(Surv(time, status) ~ age + sex + ph.ecog, data = lungc, ties = "breslow"))
out$cox_lung_cat <- cox_ref(coxph(Surv(time, status) ~ age + sex + relevel(factor(ph.ecog), ref = "1") + wt.loss, data = lungc))
out$cox_lung_strata <- cox_ref(coxph(Surv(time, status) ~ age + ph.ecog + strata(sex), data = lungc))
out$cox_lung_cluster <- cox_ref(coxph(Surv(time, status) ~ age + sex + ph.karno, cluster = inst, data = lungc))
vet <- veteran
out$cox_veteran_cat <- cox_ref(coxph(Surv(time, status) ~ trt + factor(celltype) + karno + prior, data = vet))
out$cox_veteran_breslow_strata <- cox_ref(coxph(Surv(time, status) ~ karno + age + strata(celltype), data = vet, ties = "breslow"))
pbcc <- na.omit(pbc[, c("time", "status", "age", "bili", "albumin", "edema", "protime", "sex")])
pbcc$death <- as.integer(pbcc$status == 2)
out$cox_pbc <- cox_ref(coxph(Surv(time, death) ~ age + log(bili) + albumin + factor(edema) + protime, data = pbcc))
col <- colon[colon$etype == 2, ]
col <- na.omit(col[, c("time", "status", "rx", "sex", "age", "nodes", "differ", "id")])
out$cox_colon_efron <- cox_ref(coxph(Surv(time, status) ~ rx + sex + age + nodes + factor(differ), data = col))
out$cox_colon_robust_strata <- cox_ref(coxph(Surv(time, status) ~ rx + age + nodes + strata(sex), cluster = differ, data = col))
out$cox_ovarian <- cox_ref(coxph(Surv(futime, fustat) ~ age + resid.ds, data = ovarian))
# times equal up to rounding error (0.1 + 0.2 vs 0.3): R merges them (timefix / aeqSurv);
# the same expressions are evaluated in Python (IEEE arithmetic), not read from a CSV
near <- data.frame(time = rep(c(0.1 + 0.2, 0.3, 0.7, 0.6 + 0.1, 1.5, 1.2 + 0.3), 5) + rep(0:4, each = 6),
                   status = rep(c(1, 1, 0, 1, 1, 0, 1, 0, 1, 1), 3), x = rep(c(0, 1, 1, 0, 2), 6),
                   g = rep(c("a", "b", "c"), 10))
fit <- survfit(Surv(time, status) ~ 1, data = near)
out$neartie <- list(n_times = length(fit$time), surv = fit$surv,
                    logrank = survdiff(Surv(time, status) ~ g, data = near)$chisq,
                    coef = unname(coef(coxph(Surv(time, status) ~ x, data = near))))
write_json(out, "tests/stats/reference/km_cox.json", digits = NA, auto_unbox = TRUE, pretty = FALSE, na = "null")
cat("written\n")
