/* mmaint — mm_dataset: features and labels in memory, loaded from IDX or CSV.
 *
 * A dataset holds n samples of `dim` float features (row-major) and,
 * optionally, one int32 label per sample. Bindings and the CLI use it to feed
 * mm_optimizer_fit. Read-only calls are thread-safe on a dataset nobody mutates.
 */
#ifndef MM_DATASET_H
#define MM_DATASET_H

#include "mm_common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mm_dataset mm_dataset;

/* Load IDX files (the MNIST format; plain or gzip-compressed, detected from
 * the content). `images_path`: an idx file of unsigned bytes with >= 1
 * dimension after the count (28x28 images become 784 features). Bytes are
 * scaled to [0, 1]. `labels_path` may be NULL; otherwise a 1-d idx file of
 * the same count. The caller owns *out. */
MM_API mm_status mm_dataset_load_idx(mm_dataset **out, const char *images_path,
                                     const char *labels_path);

/* The special label columns of mm_dataset_load_csv (the values it has
 * always taken): the labels are in the last column, or there are none. */
#define MM_CSV_LABEL_LAST (-2)
#define MM_CSV_NO_LABELS (-1)

/* Load a CSV file of numbers, one sample per line. `label_column` is the
 * 0-based column holding an integer label, MM_CSV_LABEL_LAST for the last
 * column (what the CLI and the bindings default to) or MM_CSV_NO_LABELS
 * for none. Values below MM_CSV_LABEL_LAST count further from the end
 * (MM_CSV_LABEL_LAST - 1 is the column before the last). The CLI
 * (--label-column last|none|K), Python (label_column="last"|None|k) and Lua
 * ("last"|"none"|k, 1-based) spell the two special columns the same way;
 * their negative numbers count from the end with -1 = the last column.
 * A first line that does not parse as numbers is taken as a header and
 * skipped. Every row must have the same number of columns; the message
 * names the bad line. MM_E_OUT_OF_RANGE if the label column is not in the
 * file. */
MM_API mm_status mm_dataset_load_csv(mm_dataset **out, const char *path, int label_column);

/* Wrap copies of caller arrays: x is n*dim floats, labels n ints or NULL. */
MM_API mm_status mm_dataset_create(mm_dataset **out, const float *x, const int32_t *labels,
                                   size_t n, size_t dim);

/* NULL is a no-op. */
MM_API void mm_dataset_free(mm_dataset *ds);

MM_API size_t mm_dataset_size(const mm_dataset *ds);
MM_API size_t mm_dataset_dim(const mm_dataset *ds);
/* 1 + the largest label, or 0 without labels. */
MM_API size_t mm_dataset_num_classes(const mm_dataset *ds);

/* Borrowed pointers into the dataset (valid until it is mutated or freed);
 * labels is NULL when the dataset has none. */
MM_API const float *mm_dataset_features(const mm_dataset *ds);
MM_API const int32_t *mm_dataset_labels(const mm_dataset *ds);

/* New dataset holding samples [start, start+count) (copies). */
MM_API mm_status mm_dataset_slice(const mm_dataset *ds, size_t start, size_t count,
                                  mm_dataset **out);

/* Normalisation. Standardise each feature to zero mean and unit variance
 * using the statistics of `reference` (pass ds itself, or the training set
 * when normalising a test set, so both use the same transform). Features with
 * zero variance are only centred. */
MM_API mm_status mm_dataset_standardize(mm_dataset *ds, const mm_dataset *reference);
/* Scale each feature to [0, 1] with the min/max of `reference`. */
MM_API mm_status mm_dataset_minmax(mm_dataset *ds, const mm_dataset *reference);

#ifdef __cplusplus
}
#endif
#endif /* MM_DATASET_H */
